//! The `mqttd` binary: the broker, its `pub` / `sub` client subcommands, and `bench`.

use std::process::ExitCode;

use clap::Parser;
use mqttd::cli::{Cli, Command};

fn main() -> ExitCode {
    keep_freed_heap();
    let cli = Cli::parse();
    if cli.print_config {
        print!("{}", mqttd::config::example_yaml());
        return ExitCode::SUCCESS;
    }
    match &cli.command {
        Some(Command::Pub(args)) => return mqttd::client::run_pub(args),
        Some(Command::Sub(args)) => return mqttd::client::run_sub(args),
        Some(Command::Bench(args)) => return mqttd::bench::run(args),
        Some(Command::Passwd(args)) => return mqttd::auth::passwd::run(args),
        Some(Command::Ctl(args)) => return mqttd::ctl::run(args),
        _ => {}
    }
    if let Some(Command::CheckConfig { file }) = &cli.command {
        // The password, ACL and TLS files too: a broker would refuse to start without them.
        let checked = mqttd::Config::from_file(file)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                mqttd::auth::Authenticator::from_config(&c)
                    .and_then(|_| mqttd::auth::load_acl(&c))
                    .map_err(|e| e.to_string())
                    .and_then(|_| mqttd::transport::quic_tls::check_files(&c))
                    .map_err(|e| format!("{}: {e}", file.display()))
            });
        return match checked {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mqttd: {e}");
                ExitCode::from(2)
            }
        };
    }
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mqttd: {e}");
            return ExitCode::from(2);
        }
    };
    mqttd::cli::init_logging(&config);
    if let Some(limit) = mqttd::fdlimit::raise_nofile() {
        tracing::debug!(limit, "open files limit");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = match build_runtime(config.runtime.worker_threads_for(cores)) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mqttd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listening_file = cli.listening_file.clone();
    let serve = async move {
        let handle = mqttd::App::new(config)
            .start()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(path) = &listening_file {
            if let Err(e) = mqttd::cli::write_listening_file(path, handle.server()) {
                handle.shutdown().await;
                return Err(format!("cannot write {}: {e}", path.display()));
            }
        }
        handle.run_until_signal().await;
        Ok(())
    };
    match runtime.block_on(serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqttd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The tokio runtime the broker runs on.
///
/// One thread (the default on up to three cores) is a current-thread runtime: it runs the
/// tasks that readiness woke in the order the kernel reported it, so a SUBSCRIBE read before a
/// PUBLISH from another connection reaches the broker task first, whatever the gap between
/// them. A multi-thread runtime with one worker does not: its LIFO slot runs the last task
/// woken first, so of two connections that became readable in the same poll, the later one
/// was read first (a subscription made 100 µs before a matching publish missed it in most
/// tries). Several threads read connections in parallel, and two reads less than a wake-up
/// apart may reach the broker in either order (README "Threads").
fn build_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// glibc gives the top of its heap back to the kernel as soon as 128 KiB of it is free
/// (`M_TRIM_THRESHOLD`). A broker's write batches come and go by the megabyte under load (100
/// subscribers' encoded PUBLISH batches), so the heap shrank and grew all the time: in fan-out
/// QoS 0, 160,000-200,000 page faults (each a zeroed page) and ~1,800 `brk` calls per 6 million
/// deliveries, ~10 % of the broker's CPU. Freed memory now stays in the heap up to 16 MiB
/// (what is above is still returned), and allocations up to 4 MiB come from the heap instead of
/// a fresh `mmap` each (setting the trim threshold fixes glibc's otherwise adaptive mmap
/// threshold at 128 KiB). This is the binary's choice, not the library's: a program that embeds
/// the broker owns its allocator. An operator's `MALLOC_TRIM_THRESHOLD_` /
/// `MALLOC_MMAP_THRESHOLD_` environment variables win (README, "Memory").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_heap() {
    const TRIM_THRESHOLD: libc::c_int = 16 << 20;
    const MMAP_THRESHOLD: libc::c_int = 4 << 20;
    if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
        || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
    {
        return;
    }
    // SAFETY: `mallopt` only changes parameters of glibc's allocator, which it applies under
    // the allocator's own lock; it is called first thing in `main`, before any thread exists.
    // Its result (1 on success) needs no handling: on failure the defaults stay.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_heap() {}
