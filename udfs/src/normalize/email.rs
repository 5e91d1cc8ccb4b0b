//! `normalize_email(text)`: one spelling per mailbox, so sign-ups, logins and CRM records
//! of the same person join.

use std::sync::LazyLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::string_map::{coerce_one_string, map_strings};
use crate::docs::NORMALIZATION;

/// Providers that ignore dots in the local part.
const DOTS_IGNORED: &[&str] = &["gmail.com"];

/// Writes the normalized form of `text` into `out`, or returns false when it is not an
/// email address: trimmed and lower-cased, a `+tag` sub-address removed, dots removed
/// where the provider ignores them (Gmail), and `googlemail.com` read as `gmail.com`.
pub fn normalize_email(text: &str, out: &mut String) -> bool {
    let text = text.trim().trim_start_matches("mailto:");
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim_end_matches('.');
    let valid_domain = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.contains("..")
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b >= 0x80);
    let valid_local = !local.is_empty()
        && !local.contains('@')
        && !local
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    if !valid_domain || !valid_local {
        return false;
    }
    let domain = domain.to_lowercase();
    let domain = if domain == "googlemail.com" {
        "gmail.com".to_string()
    } else {
        domain
    };
    let local = local.split('+').next().unwrap_or(local);
    if local.is_empty() {
        return false;
    }
    let ignore_dots = DOTS_IGNORED.contains(&domain.as_str());
    for c in local.chars() {
        if !(ignore_dots && c == '.') {
            out.extend(c.to_lowercase());
        }
    }
    if out.is_empty() {
        return false;
    }
    out.push('@');
    out.push_str(&domain);
    true
}

/// The `normalize_email` function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct NormalizeEmail {
    signature: Signature,
}

impl Default for NormalizeEmail {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for NormalizeEmail {
    fn name(&self) -> &str {
        "normalize_email"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_one_string(self.name(), arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_strings(&args.args, args.number_rows, normalize_email)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        NORMALIZATION,
        "One spelling per mailbox: trimmed and lower-cased, a '+tag' sub-address removed, \
         dots removed from Gmail addresses (and googlemail.com read as gmail.com). \
         Text that is not an email address gives NULL.",
        "normalize_email(text)",
    )
    .with_sql_example(
        "```sql\n> SELECT normalize_email(' Jane.Doe+news@GoogleMail.com ');\n\
         +--------------------------------------------------------+\n\
         | normalize_email(Utf8(\" Jane.Doe+news@GoogleMail.com \")) |\n\
         +--------------------------------------------------------+\n\
         | janedoe@gmail.com                                      |\n\
         +--------------------------------------------------------+\n```",
    )
    .with_argument("text", "An email address as typed.")
    .build()
});

#[cfg(test)]
mod tests {
    use super::normalize_email;

    fn normalized(text: &str) -> Option<String> {
        let mut out = String::new();
        normalize_email(text, &mut out).then_some(out)
    }

    #[test]
    fn one_spelling_per_mailbox() {
        assert_eq!(
            normalized(" Jane.Doe+news@GoogleMail.com ").as_deref(),
            Some("janedoe@gmail.com")
        );
        assert_eq!(
            normalized("Jane.Doe@Example.ORG").as_deref(),
            Some("jane.doe@example.org")
        );
        assert_eq!(
            normalized("mailto:bob+x@corp.example.com").as_deref(),
            Some("bob@corp.example.com")
        );
    }

    #[test]
    fn not_addresses() {
        for text in [
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@localhost",
            "ja ne@example.com",
            "+tag@example.com",
            "a@b..com",
        ] {
            assert_eq!(normalized(text), None, "{text}");
        }
    }
}
