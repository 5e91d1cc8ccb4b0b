//! `url_domain(url)` and `url_path(url)`: the parts of landing pages and referrers that
//! onboarding funnels group by.

use std::sync::LazyLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use url::Url;

use super::string_map::{coerce_one_string, map_strings};
use crate::docs::NORMALIZATION;

/// Which part of a URL a function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UrlPart {
    /// The host, lower-cased, without a leading `www.`.
    Domain,
    /// The path, without query or fragment; `/` for none.
    Path,
}

/// A URL as written, also without a scheme (`example.com/pricing`).
fn parse(text: &str) -> Option<Url> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match Url::parse(text) {
        Ok(url) if url.has_host() => Some(url),
        // `example.com:8443/pricing` reads as the scheme `example.com`: without `://`, it
        // is a host and port.
        Ok(_) if !text.contains("://") && !text.starts_with("mailto:") => {
            Url::parse(&format!("http://{text}")).ok().filter(|url| {
                url.host_str()
                    .is_some_and(|host| host.contains('.') || host == "localhost")
            })
        }
        Ok(_) => None,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let text = text.trim_start_matches("//");
            Url::parse(&format!("http://{text}")).ok().filter(|url| {
                url.host_str()
                    .is_some_and(|host| host.contains('.') || host == "localhost")
            })
        }
        Err(_) => None,
    }
}

impl UrlPart {
    /// Writes this part of `text` into `out`, or returns false when `text` is not a URL.
    pub fn extract(self, text: &str, out: &mut String) -> bool {
        let Some(url) = parse(text) else {
            return false;
        };
        match self {
            Self::Domain => match url.host_str() {
                Some(host) => {
                    out.push_str(host.strip_prefix("www.").unwrap_or(host));
                    true
                }
                None => false,
            },
            Self::Path => {
                out.push_str(url.path());
                true
            }
        }
    }
}

/// The `url_domain` and `url_path` functions.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UrlPartFunction {
    part: UrlPart,
    signature: Signature,
}

impl UrlPartFunction {
    /// The function returning `part`.
    pub fn new(part: UrlPart) -> Self {
        Self {
            part,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for UrlPartFunction {
    fn name(&self) -> &str {
        match self.part {
            UrlPart::Domain => "url_domain",
            UrlPart::Path => "url_path",
        }
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
        map_strings(&args.args, args.number_rows, |text, out| {
            self.part.extract(text, out)
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        match self.part {
            UrlPart::Domain => Some(&DOMAIN_DOC),
            UrlPart::Path => Some(&PATH_DOC),
        }
    }
}

static DOMAIN_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        NORMALIZATION,
        "The host of a URL, lower-cased (internationalized names in their ASCII form) and \
         without a leading 'www.'. A URL may leave out its scheme. Text that is not a URL \
         gives NULL.",
        "url_domain(url)",
    )
    .with_sql_example(
        "```sql\n> SELECT url_domain('https://WWW.Example.com:8443/pricing?plan=pro');\n\
         +--------------------------------------------------------------+\n\
         | url_domain(Utf8(\"https://WWW.Example.com:8443/pricing?plan=pro\")) |\n\
         +--------------------------------------------------------------+\n\
         | example.com                                                  |\n\
         +--------------------------------------------------------------+\n```",
    )
    .with_argument("url", "A URL, such as a landing page or a referrer.")
    .with_related_udf("url_path")
    .build()
});

static PATH_DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        NORMALIZATION,
        "The path of a URL, percent-encoded as in the URL, without query string or \
         fragment; '/' when the URL has none. Text that is not a URL gives NULL.",
        "url_path(url)",
    )
    .with_sql_example(
        "```sql\n> SELECT url_path('https://example.com/pricing/?plan=pro#faq');\n\
         +-----------------------------------------------------------+\n\
         | url_path(Utf8(\"https://example.com/pricing/?plan=pro#faq\")) |\n\
         +-----------------------------------------------------------+\n\
         | /pricing/                                                 |\n\
         +-----------------------------------------------------------+\n```",
    )
    .with_argument("url", "A URL, such as a landing page or a referrer.")
    .with_related_udf("url_domain")
    .build()
});

#[cfg(test)]
mod tests {
    use super::UrlPart;

    fn part(part: UrlPart, text: &str) -> Option<String> {
        let mut out = String::new();
        part.extract(text, &mut out).then_some(out)
    }

    #[test]
    fn domains() {
        assert_eq!(
            part(UrlPart::Domain, "https://WWW.Example.com:8443/x").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            part(UrlPart::Domain, "example.com/pricing").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            part(UrlPart::Domain, "http://münchen.de/").as_deref(),
            Some("xn--mnchen-3ya.de")
        );
        assert_eq!(
            part(UrlPart::Domain, "example.com:8443/pricing").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            part(UrlPart::Domain, "localhost:3000/x").as_deref(),
            Some("localhost")
        );
        assert_eq!(part(UrlPart::Domain, "mailto:jane@example.com"), None);
        assert_eq!(part(UrlPart::Domain, "not a url"), None);
    }

    #[test]
    fn paths() {
        assert_eq!(
            part(UrlPart::Path, "https://example.com/pricing/?plan=pro#faq").as_deref(),
            Some("/pricing/")
        );
        assert_eq!(
            part(UrlPart::Path, "https://example.com").as_deref(),
            Some("/")
        );
        assert_eq!(
            part(UrlPart::Path, "example.com/a%20b").as_deref(),
            Some("/a%20b")
        );
    }
}
