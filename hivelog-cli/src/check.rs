//! `hivelog check`: validate, print, probe, and turn the result into an exit code.

use std::io::Write as _;
use std::sync::Arc;

use hivelog_core::{ConfigError, Env, FormatBuilder};

use crate::args::CheckOptions;
use crate::exit::EXIT_DESTINATION;
use crate::probe;
use crate::report::{self, Report};
use crate::scrub::Scrubber;
use crate::settings::{self, Resolved, Vars};

/// Runs the check on the process environment and prints the report; returns the exit code.
pub fn run(opts: &CheckOptions) -> u8 {
    let vars = Vars::from_process();
    let scrubber = Scrubber::new(vars.iter());
    let (resolved, config_error) = match resolve(opts.service.as_deref()) {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut report = Report {
        sections: settings::sections(&vars, resolved.as_ref()),
        config_error,
        destinations: Vec::new(),
        timeout: opts.timeout,
        check_id: None,
    };
    let mut stdout = std::io::stdout().lock();
    if !opts.json {
        // The configuration first: it is useful while the destinations are being tried.
        let _ = stdout.write_all(report::config_text(&report, &scrubber).as_bytes());
        if let Some(r) = &resolved {
            let _ = stdout.write_all(scrubber.clean(&crate::spill::text(r)).as_bytes());
        }
        let _ = stdout.flush();
    }
    if let Some(r) = resolved {
        let dest = r
            .destinations
            .into_iter()
            .filter_map(|(d, c)| c.map(|c| (d.name(), c)))
            .collect();
        let id = probe::check_id(&r.format);
        report.check_id = Some(id.clone());
        match probe::probe_all(dest, &r.format, &id, opts.timeout) {
            Ok(p) => report.destinations = p,
            Err(e) => {
                eprintln!("hivelog: cannot start a runtime to test the destinations: {e}");
                return EXIT_DESTINATION;
            }
        }
    }
    let text = if opts.json {
        report::json(&report, &scrubber) + "\n"
    } else {
        report::destinations_text(&report, &scrubber)
    };
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    report.exit_code()
}

/// Validates the environment with `try_init`'s own code, then resolves what the check needs.
///
/// `validate` is the whole of `try_init` but starting anything: every variable is parsed by
/// the code that parses it in a service, in the same order, so the first error is the one the
/// service would report, and no thread, file or connection is opened.
fn resolve(service: Option<&str>) -> Result<Resolved, ConfigError> {
    let mut builder = hivelog::builder()
        .env(Env::from_process())
        .output(hivelog::Output::None)
        .panic_hook(false);
    if let Some(s) = service {
        builder = builder.service(s);
    }
    builder.validate()?;

    // The same parsers again, for the values the facade keeps to itself.
    let env = Env::from_process();
    let mut format = FormatBuilder::default();
    if let Some(s) = service {
        format = format.service(s);
    }
    let format = Arc::new(format.apply_env(&env)?.build());
    let mut destinations = Vec::new();
    for d in hivelog::destinations() {
        destinations.push((d, d.configure(&env, None)?));
    }
    Ok(Resolved {
        pipeline: hivelog_core::PipelineConfig::default()
            .apply_env(&env)?
            .for_service(format.service()),
        format,
        destinations,
    })
}
