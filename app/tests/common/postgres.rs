//! A private PostgreSQL cluster for tests that stop, start and restart the
//! database: `initdb` into a temporary folder with trust authentication, a
//! free loopback port, and its socket in that folder. Removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where Debian's `postgresql` package puts the server binaries, one folder
/// per major version.
const POSTGRES_LIB: &str = "/usr/lib/postgresql";

/// A PostgreSQL cluster of its own on 127.0.0.1; stopped and removed when
/// dropped.
pub struct PostgresServer {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

impl PostgresServer {
    /// Creates the cluster and starts it. Panics when the server binaries
    /// are missing: tests that need them fail loudly, never skip.
    pub fn start() -> PostgresServer {
        let bin = server_binaries();
        let dir = std::env::temp_dir().join(super::unique_name());
        std::fs::create_dir_all(&dir).expect("PostgreSQL folder");
        let server = PostgresServer {
            port: super::free_port(),
            dir,
            bin,
        };
        // initdb refuses to run as root; the package's `postgres` user owns
        // the cluster then.
        if is_root() {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(&server.dir));
        }
        let data = server.data_dir();
        run(server
            .as_owner(&server.bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data));
        server.resume();
        server
    }

    /// The URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the stopped cluster again on the same port and waits until it
    /// accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        self.pg_ctl(&["start", "-w", "-t", "30", "-o", &options]);
    }

    /// Stops the cluster the way an orderly shutdown does: open sessions are
    /// ended, running transactions roll back.
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-w", "-t", "30", "-m", "fast"]);
    }

    /// `pg_ctl restart -m fast`: a clean restart, as a minor upgrade does.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-w", "-t", "30", "-m", "fast"]);
    }

    /// Freezes the cluster (SIGSTOP to the postmaster and every backend):
    /// connections stay open and new ones are accepted by the kernel, but
    /// nothing answers, as when the server hangs or the network between
    /// drops packets. [`Self::thaw`] lets it go on.
    pub fn freeze(&self) {
        self.signal_all("-STOP").expect("freeze PostgreSQL");
    }

    /// Lets a frozen cluster go on where it stopped.
    pub fn thaw(&self) {
        self.signal_all("-CONT").expect("thaw PostgreSQL");
    }

    /// Sends `signal` to the postmaster and every process it started.
    fn signal_all(&self, signal: &str) -> Result<(), String> {
        let pid_file = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .map_err(|error| format!("postmaster.pid: {error}"))?;
        let postmaster = pid_file.lines().next().unwrap_or_default().trim();
        // Children first, so that none is left running under a stopped parent.
        let _ = Command::new("pkill")
            .args([signal, "-P", postmaster])
            .status();
        let sent = Command::new("kill")
            .args([signal, postmaster])
            .status()
            .map_err(|error| format!("kill: {error}"))?;
        if sent.success() {
            Ok(())
        } else {
            Err(format!("kill {signal} {postmaster} failed"))
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        let log = self.dir.join("server.log");
        run(self
            .as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(log)
            .args(args));
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command run as the cluster's owner.
    fn as_owner(&self, program: &Path) -> Command {
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // A frozen cluster would not hear the stop below.
        let _ = self.signal_all("-CONT");
        let _ = self
            .as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["stop", "-m", "immediate"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed `…/bin` folder holding `initdb` and `pg_ctl`.
fn server_binaries() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(POSTGRES_LIB)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under {POSTGRES_LIB}/*/bin; \
             install the postgresql package (.ci/run and ./scripts/test.sh do)"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("run a PostgreSQL command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
