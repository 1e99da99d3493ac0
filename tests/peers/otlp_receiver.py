#!/usr/bin/env python3
"""An OTLP/HTTP logs receiver for hivelog's tests, built on the official `opentelemetry-proto`
classes, so that what it decodes is exactly what the specification defines.

    otlp_receiver.py --port P [--grpc-port G]

POST /v1/logs or /<tenant>/v1/logs: decodes the body (protobuf or JSON, gzip or not) and keeps
one entry per request. Each tenant (a path prefix a test picks) has its own requests and its
own scripted answers, so tests running at the same time do not see each other.

    POST /<tenant>/script   a JSON list of answers used in order, one per request, then 200:
                            {"status": 503, "retry_after": "1"} | {"status": 400, "message": "m"}
                            | {"partial": 2, "message": "m"} | {"hang": true}
    GET  /<tenant>/requests all requests so far, decoded (see `decode`)
    gRPC LogsService/Export on --grpc-port: the same, the tenant named by the `x-tenant`
                            metadata; scripted answers may be {"grpc": "UNAVAILABLE",
                            "retry_after": 1, "message": "m"} (a google.rpc.RetryInfo in the
                            status details when retry_after is given) or {"partial": n}
    GET  /requests?service=S the requests of the root tenant (where a collector forwards)
                            with only their records whose resource's service.name is S
"""
import argparse
import gzip
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def rpc_status(code, message, details=b""):
    """google.rpc.Status {1: code, 2: message, 3: details}, encoded by hand (the two fields of
    status.proto; googleapis-common-protos is not needed for that)."""
    m = message.encode()
    return b"\x08" + varint(code) + b"\x12" + varint(len(m)) + m + details

LOCK = threading.Lock()
REQUESTS = {}  # tenant -> [decoded request]
SCRIPTS = {}  # tenant -> [answer]


def anyvalue(v):
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return {"string": v.string_value}
    if kind == "int_value":
        return {"int": v.int_value}
    if kind == "double_value":
        d = v.double_value
        return {"double": d if math.isfinite(d) else str(d)}
    if kind == "bool_value":
        return {"bool": v.bool_value}
    if kind == "bytes_value":
        return {"bytes": v.bytes_value.hex()}
    if kind == "array_value":
        return {"array": [anyvalue(x) for x in v.array_value.values]}
    if kind == "kvlist_value":
        return {"kvlist": attrs(v.kvlist_value.values)}
    return None


def attrs(kvs):
    out = {}
    for kv in kvs:
        if kv.key in out:
            out.setdefault("__duplicate_keys__", []).append(kv.key)
        out[kv.key] = anyvalue(kv.value)
    return out


def decode(req, headers):
    """One request as JSON: every field of every record, typed attributes, hex ids."""
    records = []
    for rl in req.resource_logs:
        resource = attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                records.append({
                    "resource": resource,
                    "scope": sl.scope.name,
                    "scope_version": sl.scope.version,
                    "time_unix_nano": r.time_unix_nano,
                    "observed_time_unix_nano": r.observed_time_unix_nano,
                    "severity_number": r.severity_number,
                    "severity_text": r.severity_text,
                    "body": anyvalue(r.body) if r.HasField("body") else None,
                    "attributes": attrs(r.attributes),
                    "dropped_attributes_count": r.dropped_attributes_count,
                    "flags": r.flags,
                    "trace_id": r.trace_id.hex(),
                    "span_id": r.span_id.hex(),
                })
    return {"headers": headers, "records": records, "received_at": time.time()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", ctype="application/json", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def tenant_and_rest(self):
        path = urlparse(self.path).path.strip("/")
        for suffix in ("v1/logs", "script", "requests"):
            if path == suffix:
                return "", suffix
            if path.endswith("/" + suffix):
                return path[: -len(suffix) - 1], suffix
        return None, path

    def do_GET(self):
        tenant, rest = self.tenant_and_rest()
        if rest != "requests":
            return self.reply(404, b"{}")
        with LOCK:
            reqs = list(REQUESTS.get(tenant, []))
        service = parse_qs(urlparse(self.path).query).get("service")
        if service:
            # A collector batches: one forwarded request can hold several services' records.
            want = {"string": service[0]}
            reqs = [q | {"records": [r for r in q["records"] if r["resource"].get("service.name") == want]}
                    for q in reqs]
            reqs = [q for q in reqs if q["records"]]
        self.reply(200, json.dumps(reqs).encode())

    def do_POST(self):
        tenant, rest = self.tenant_and_rest()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if rest == "script":
            with LOCK:
                SCRIPTS[tenant] = json.loads(body)
            return self.reply(200, b"{}")
        if rest != "v1/logs":
            return self.reply(404, b"{}")
        ctype = self.headers.get("Content-Type", "")
        is_json = ctype.startswith("application/json")
        encoding = self.headers.get("Content-Encoding", "")
        raw = gzip.decompress(body) if encoding == "gzip" else body
        req = logs_service_pb2.ExportLogsServiceRequest()
        try:
            if is_json:
                json_format.Parse(raw, req)
            else:
                req.ParseFromString(raw)
        except Exception as e:  # a request the official classes cannot decode is an error
            return self.reply(400, json.dumps({"code": 3, "message": f"undecodable: {e}"}).encode())
        headers = {k.lower(): v for k, v in self.headers.items()}
        headers["wire_bytes"] = len(body)
        with LOCK:
            script = SCRIPTS.get(tenant) or []
            answer = script.pop(0) if script else {}
            REQUESTS.setdefault(tenant, []).append(decode(req, headers) | {"answer": answer})
        if answer.get("hang"):
            time.sleep(3600)
            return
        status = answer.get("status", 200)
        resp = logs_service_pb2.ExportLogsServiceResponse()
        if "partial" in answer:
            resp.partial_success.rejected_log_records = answer["partial"]
            resp.partial_success.error_message = answer.get("message", "")
        if status == 200:
            out_body = json_format.MessageToJson(resp).encode() if is_json else resp.SerializeToString()
        else:
            code, message = (14 if status >= 500 else 3), answer.get("message", "")
            out_body = (json.dumps({"code": code, "message": message}).encode() if is_json
                        else rpc_status(code, message))
        extra = {"Retry-After": answer["retry_after"]} if "retry_after" in answer else None
        self.reply(status, out_body, "application/json" if is_json else "application/x-protobuf", extra)


def retry_info_details(seconds):
    """google.rpc.Status.details holding one Any(google.rpc.RetryInfo{retry_delay})."""
    duration = b"\x08" + varint(seconds)
    info = b"\x0a" + varint(len(duration)) + duration
    url = b"type.googleapis.com/google.rpc.RetryInfo"
    any_ = b"\x0a" + varint(len(url)) + url + b"\x12" + varint(len(info)) + info
    return b"\x1a" + varint(len(any_)) + any_


def grpc_server(port):
    import grpc
    from concurrent import futures
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):
        def Export(self, request, context):
            md = {k: v for k, v in context.invocation_metadata()}
            tenant = md.get("x-tenant", "")
            headers = {k: (v if isinstance(v, str) else v.hex()) for k, v in md.items()}
            with LOCK:
                script = SCRIPTS.get(tenant) or []
                answer = script.pop(0) if script else {}
                REQUESTS.setdefault(tenant, []).append(decode(request, headers) | {"answer": answer})
            resp = logs_service_pb2.ExportLogsServiceResponse()
            if "partial" in answer:
                resp.partial_success.rejected_log_records = answer["partial"]
                resp.partial_success.error_message = answer.get("message", "")
            if "grpc" in answer:
                code = getattr(grpc.StatusCode, answer["grpc"])
                message = answer.get("message", "")
                details = retry_info_details(answer["retry_after"]) if "retry_after" in answer else b""
                context.set_trailing_metadata(
                    (("grpc-status-details-bin", rpc_status(code.value[0], message, details)),))
                context.set_code(code)
                context.set_details(message)
            return resp

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--grpc-port", type=int)
    args = p.parse_args()
    if args.grpc_port:
        _grpc = grpc_server(args.grpc_port)  # noqa: F841 (kept alive with the process)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
