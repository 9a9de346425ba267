//! `mqttd passwd`: creates and edits password files, like `mosquitto_passwd`.
//!
//! ```text
//! mqttd passwd -c FILE USER          # new file, prompt for the password (twice)
//! mqttd passwd FILE USER             # add or change a user
//! mqttd passwd -b FILE USER PASSWORD # batch: password on the command line
//! mqttd passwd -p PASSWORD FILE USER # the same
//! echo pw | mqttd passwd --stdin FILE USER
//! mqttd passwd -D FILE USER          # delete a user
//! ```
//!
//! A running broker reads the file again on SIGHUP.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use super::password::{check_username, PasswordFile};

/// Arguments of `mqttd passwd`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct PasswdArgs {
    /// Create a new file (replacing an existing one).
    #[arg(short = 'c', conflicts_with = "delete")]
    pub create: bool,
    /// Delete USER from the file.
    #[arg(short = 'D', conflicts_with_all = ["batch", "password", "stdin"])]
    pub delete: bool,
    /// Batch mode: the password is the third argument (visible in the process list: prefer
    /// --stdin in scripts).
    #[arg(short = 'b', requires = "batch_password")]
    pub batch: bool,
    /// The password (like -b).
    #[arg(short = 'p', long = "password", value_name = "PASSWORD", conflicts_with_all = ["batch", "stdin"])]
    pub password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "batch")]
    pub stdin: bool,
    /// The password file.
    pub file: PathBuf,
    /// The user name.
    pub user: String,
    /// The password, with -b.
    #[arg(requires = "batch")]
    pub batch_password: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum PasswdError {
    #[error(transparent)]
    File(#[from] super::password::PasswordFileError),
    #[error("{0}")]
    Other(String),
}

/// Runs `mqttd passwd`; prints what it did or why it failed.
pub fn run(args: &PasswdArgs) -> ExitCode {
    match execute(args, &mut std::io::stdin().lock(), prompt) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mqttd passwd: {e}");
            ExitCode::from(2)
        }
    }
}

fn prompt(text: &str) -> std::io::Result<String> {
    rpassword::prompt_password(text)
}

fn execute(
    args: &PasswdArgs,
    stdin: &mut dyn BufRead,
    prompt: impl Fn(&str) -> std::io::Result<String>,
) -> Result<String, PasswdError> {
    check_username(&args.user).map_err(PasswdError::Other)?;
    let file = &args.file;
    let mut passwords = if args.create {
        PasswordFile::default()
    } else {
        match PasswordFile::load(file) {
            Ok(p) => p,
            Err(super::password::PasswordFileError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(PasswdError::Other(format!(
                    "{}: no such file (use -c to create it)",
                    file.display()
                )));
            }
            Err(e) => return Err(e.into()),
        }
    };
    if args.delete {
        if !passwords.remove(&args.user) {
            return Err(PasswdError::Other(format!(
                "{}: no user {:?}",
                file.display(),
                args.user
            )));
        }
        passwords.save(file)?;
        return Ok(format!("{}: deleted user {:?}", file.display(), args.user));
    }
    let password = if let Some(p) = args.batch_password.clone().or(args.password.clone()) {
        p
    } else if args.stdin {
        let mut line = String::new();
        stdin
            .read_line(&mut line)
            .map_err(|e| PasswdError::Other(format!("reading the password: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        let read = |t: &str| prompt(t).map_err(|e| PasswdError::Other(format!("{t} {e}")));
        let first = read("Password: ")?;
        let again = read("Reenter password: ")?;
        if first != again {
            return Err(PasswdError::Other("the passwords do not match".into()));
        }
        first
    };
    if password.is_empty() {
        return Err(PasswdError::Other("the password is empty".into()));
    }
    let existed = passwords.contains(&args.user);
    passwords
        .set(&args.user, password.as_bytes())
        .map_err(PasswdError::Other)?;
    passwords.save(file)?;
    let what = if existed { "updated" } else { "added" };
    Ok(format!("{}: {what} user {:?}", file.display(), args.user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Wrap {
        #[command(flatten)]
        args: PasswdArgs,
    }

    fn parse(args: &[&str]) -> Result<PasswdArgs, clap::Error> {
        Wrap::try_parse_from(std::iter::once("passwd").chain(args.iter().copied())).map(|w| w.args)
    }

    fn no_prompt(_: &str) -> std::io::Result<String> {
        panic!("unexpected prompt")
    }

    #[test]
    fn create_add_change_delete() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        let fs = f.to_str().unwrap();
        let mut empty: &[u8] = b"";
        let run =
            |args: &[&str], stdin: &mut &[u8]| execute(&parse(args).unwrap(), stdin, no_prompt);

        let err = run(&[fs, "alice", "-p", "x"], &mut empty)
            .unwrap_err()
            .to_string();
        assert!(err.contains("use -c to create it"), "{err}");
        run(&["-c", "-b", fs, "alice", "one"], &mut empty).unwrap();
        assert!(PasswordFile::load(&f).unwrap().verify("alice", b"one"));
        let msg = run(&["-p", "two", fs, "bob"], &mut empty).unwrap();
        assert!(msg.ends_with("added user \"bob\""), "{msg}");
        let mut input: &[u8] = b"three\n";
        let msg = run(&["--stdin", fs, "alice"], &mut input).unwrap();
        assert!(msg.ends_with("updated user \"alice\""), "{msg}");
        let file = PasswordFile::load(&f).unwrap();
        assert!(file.verify("alice", b"three") && file.verify("bob", b"two"));
        run(&["-D", fs, "bob"], &mut empty).unwrap();
        assert!(!PasswordFile::load(&f).unwrap().contains("bob"));
        assert!(run(&["-D", fs, "bob"], &mut empty).is_err());
        assert!(run(&["-p", "x", fs, "a:b"], &mut empty).is_err());
        let mut blank: &[u8] = b"\n";
        assert!(run(&["--stdin", fs, "c"], &mut blank).is_err());
    }

    #[test]
    fn prompt_asks_twice() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        let args = parse(&["-c", f.to_str().unwrap(), "alice"]).unwrap();
        let mut empty: &[u8] = b"";
        execute(&args, &mut empty, |_| Ok("pw".into())).unwrap();
        assert!(PasswordFile::load(&f).unwrap().verify("alice", b"pw"));
        let answers = std::cell::RefCell::new(vec!["a".to_string(), "b".to_string()]);
        let err = execute(&args, &mut empty, |_| Ok(answers.borrow_mut().remove(0)))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "the passwords do not match");
    }

    #[test]
    fn flag_combinations() {
        assert!(parse(&["-b", "f", "u"]).is_err(), "-b needs the password");
        assert!(
            parse(&["f", "u", "pw"]).is_err(),
            "a third argument needs -b"
        );
        assert!(parse(&["-D", "-p", "x", "f", "u"]).is_err());
        assert!(parse(&["-c", "-D", "f", "u"]).is_err());
        assert!(parse(&["-D", "f", "u"]).unwrap().delete);
    }
}
