//! Command-line flags in the style of grpc's interop binaries: `--name=value`, `--name value`,
//! `-name=value` (Go style), and bare `--name` for booleans (`--use_tls` = `--use_tls=true`).

use std::collections::HashMap;

/// Parsed flags: a map from flag name (without dashes) to its textual value.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    values: HashMap<String, String>,
}

impl Flags {
    /// Parses `args` (without the program name). `bool_flags` names the boolean flags, which
    /// may appear bare or be followed by a separate `true`/`false` argument; every other flag
    /// without `=` takes the next argument as its value. Unknown flags (not in `known`) are an
    /// error, so a typo never silently changes a test.
    pub fn parse<I, S>(args: I, known: &[&str], bool_flags: &[&str]) -> Result<Flags, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let mut values = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            let body = arg
                .strip_prefix("--")
                .or_else(|| arg.strip_prefix('-'))
                .ok_or_else(|| {
                    format!("unexpected argument {arg:?} (flags look like --name=value)")
                })?;
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let name = body.to_string();
                    if bool_flags.contains(&name.as_str()) {
                        match args.get(i).map(String::as_str) {
                            Some(v @ ("true" | "false")) => {
                                i += 1;
                                (name, v.to_string())
                            }
                            _ => (name, "true".to_string()),
                        }
                    } else {
                        let v = args
                            .get(i)
                            .ok_or_else(|| format!("flag --{name} needs a value"))?
                            .clone();
                        i += 1;
                        (name, v)
                    }
                }
            };
            if !known.contains(&name.as_str()) {
                return Err(format!("unknown flag --{name}"));
            }
            values.insert(name, value);
        }
        Ok(Flags { values })
    }

    /// The raw value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of `name` or `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_string()
    }

    /// A boolean flag (`true/false/1/0/yes/no`); `default` when absent.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "t" => Ok(true),
                "false" | "0" | "no" | "f" => Ok(false),
                _ => Err(format!("flag --{name}: {v:?} is not a boolean")),
            },
        }
    }

    /// A numeric flag; `default` when absent.
    pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("flag --{name}: {v:?} is not a valid number")),
        }
    }

    /// True if `name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let f = Flags::parse(
            [
                "--port=1",
                "--use_tls",
                "-x",
                "v",
                "--use_test_ca",
                "false",
                "--y",
                "3",
                "--z",
            ],
            &["port", "use_tls", "x", "use_test_ca", "y", "z"],
            &["use_tls", "use_test_ca", "z"],
        )
        .unwrap();
        assert_eq!(f.num::<u16>("port", 0).unwrap(), 1);
        assert!(f.bool("use_tls", false).unwrap());
        assert!(!f.bool("use_test_ca", true).unwrap());
        assert_eq!(f.get("x"), Some("v"));
        assert_eq!(f.num::<u32>("y", 0).unwrap(), 3);
        assert!(f.bool("z", false).unwrap());
        assert!(Flags::parse(["--nope=1"], &["port"], &[]).is_err());
        assert!(Flags::parse(["--port"], &["port"], &[]).is_err());
        assert!(
            Flags::parse(["--use_tls=maybe"], &["use_tls"], &["use_tls"])
                .unwrap()
                .bool("use_tls", false)
                .is_err()
        );
    }
}
