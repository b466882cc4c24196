//! The fake Hasura metadata API of the integration tests, runnable by hand
//! and from scripts: once ready it prints its base URL as the one line of
//! stdout, then serves until killed, logging each request on stderr.

#[path = "../tests/support/fake_hasura.rs"]
mod fake_hasura;

use std::error::Error;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use fake_hasura::{FakeHasura, objects};

/// Serve a fake Hasura GraphQL Engine v2 metadata API.
#[derive(FromArgs)]
struct Args {
    /// port to listen on (default 0: any free port)
    #[argh(option, default = "0")]
    port: u16,

    /// address to listen on (default 127.0.0.1)
    #[argh(option, default = "IpAddr::V4(Ipv4Addr::LOCALHOST)")]
    bind: IpAddr,

    /// admin secret to require (default: none, the API is open)
    #[argh(option)]
    admin_secret: Option<String>,

    /// reloads that stay inconsistent before one heals, or `always`
    /// (default 0: consistent)
    #[argh(option, default = "Healing::After(0)", from_str_fn(parse_healing))]
    inconsistent_reloads: Healing,

    /// inconsistent objects to answer while inconsistent (default 2)
    #[argh(option, default = "2")]
    objects: usize,

    /// milliseconds to wait before each answer (default 0)
    #[argh(option, default = "0")]
    delay_ms: u64,

    /// answer reload_metadata like Hasura before v2.4, without is_consistent
    #[argh(switch)]
    legacy: bool,

    /// path prefix to serve the API under, such as /hasura
    #[argh(option, default = "String::new()")]
    prefix: String,

    /// PEM certificate chain, to serve HTTPS (needs --tls-key)
    #[argh(option)]
    tls_cert: Option<PathBuf>,

    /// PEM private key, to serve HTTPS (needs --tls-cert)
    #[argh(option)]
    tls_key: Option<PathBuf>,
}

/// When reloads heal the metadata.
enum Healing {
    After(usize),
    Never,
}

fn parse_healing(value: &str) -> Result<Healing, String> {
    if value == "always" {
        return Ok(Healing::Never);
    }
    let n = value
        .parse()
        .map_err(|_| format!("expected a number or `always`, got {value:?}"))?;
    Ok(Healing::After(n))
}

fn main() {
    let args: Args = argh::from_env();
    if let Err(e) = run(args) {
        eprintln!("fake-hasura: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let mut builder = FakeHasura::builder()
        .bind(SocketAddr::new(args.bind, args.port))
        .prefix(&args.prefix)
        .objects(objects::sample(args.objects))
        .delay(Duration::from_millis(args.delay_ms))
        .log_requests();
    builder = match args.inconsistent_reloads {
        Healing::After(n) => builder.inconsistent_reloads(n),
        Healing::Never => builder.always_inconsistent(),
    };
    if let Some(secret) = &args.admin_secret {
        builder = builder.admin_secret(secret);
    }
    if args.legacy {
        builder = builder.legacy();
    }
    let fake = match (&args.tls_cert, &args.tls_key) {
        (None, None) => builder.start()?,
        (Some(cert), Some(key)) => {
            let (cert, key) = (
                std::fs::read_to_string(cert)?,
                std::fs::read_to_string(key)?,
            );
            builder.start_tls(&cert, &key)?
        }
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };

    // Scripts wait for this line: it must be the only one on stdout.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", fake.url())?;
    stdout.flush()?;

    loop {
        std::thread::park();
    }
}
