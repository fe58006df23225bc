//! `${VAR}` expansion, applied to every string in the config before it is
//! read into typed structs, so secrets never have to be written into the file.

use super::ConfigError;

/// Expands `${NAME}` from `lookup` in every string of the TOML tree; `$${` is a
/// literal `${`. `path` names the key in errors, e.g. `observer[0].webhook[0].url`.
pub(super) fn expand_tree(
    value: &mut toml::Value,
    path: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(text) if text.contains('$') => {
            *text = expand(text, lookup).map_err(|message| ConfigError::Invalid {
                key: path.clone(),
                message,
            })?;
        }
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                expand_tree(item, path, lookup)?;
                path.truncate(len);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                expand_tree(item, path, lookup)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands one string; the error names the missing or malformed variable.
pub(super) fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(literal) = after.strip_prefix("${") {
            out.push_str("${");
            rest = literal;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed '${{' in {text:?}"))?;
            let name = &body[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "'${{{name}}}' is not a valid environment variable name"
                ));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_and_escapes() {
        for (input, expected) in [
            ("Bearer ${TOKEN}", "Bearer s3cret"),
            ("${TOKEN}${TOKEN}", "s3crets3cret"),
            ("a${EMPTY}b", "ab"),
            ("$${TOKEN}", "${TOKEN}"),
            ("cost $5", "cost $5"),
            ("no vars", "no vars"),
        ] {
            assert_eq!(expand(input, &env).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(
            expand("x ${MISSING} y", &env).unwrap_err(),
            "environment variable MISSING is not set"
        );
        assert!(expand("${TOKEN", &env).unwrap_err().contains("unclosed"));
        assert!(expand("${A-B}", &env).unwrap_err().contains("not a valid"));
    }

    #[test]
    fn tree_errors_name_the_key() {
        let mut value: toml::Value =
            toml::from_str("[[observer]]\n[[observer.webhook]]\nurl = \"${NOPE}\"\n").unwrap();
        let err = expand_tree(&mut value, &mut String::new(), &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "observer[0].webhook[0].url: environment variable NOPE is not set"
        );
    }
}
