//! Debian's mosquitto as the remote broker of the bridge tests: started on a free loopback
//! port with persistence in its own temporary directory, stopped (SIGTERM, which saves its
//! database) or killed, and started again on the same port and directory. Included with
//! `#[path = "common/mosquitto.rs"] mod mosquitto;`.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Mosquitto {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MQTTD_TEST_MOSQUITTO").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    for candidate in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("mosquitto")
}

impl Mosquitto {
    /// Starts mosquitto on a free loopback port; panics if it does not come up.
    pub fn start() -> Mosquitto {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let dir = tempfile::Builder::new()
            .prefix("mqttd-bridge-mosquitto-")
            .tempdir()
            .expect("temp dir");
        // Started as root, mosquitto drops to the `mosquitto` user: let it write its
        // persistence database and log here.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod the temp dir");
        }
        let mut m = Mosquitto {
            addr,
            dir,
            child: None,
        };
        m.restart();
        m
    }

    /// Starts it (again) on the same port and data directory.
    pub fn restart(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {dir}/\nlog_dest file {dir}/mosquitto.log\n\
                 log_type all\nmax_queued_messages 10000\n",
                port = self.addr.port(),
                dir = self.dir.path().display()
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto (apt-get install mosquitto; tests/run-all.sh does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not accept connections on {}: {}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (mosquitto saves its persistence database) and wait for the exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- mosquitto log ----\n{}", self.log());
        }
        self.stop();
    }
}
