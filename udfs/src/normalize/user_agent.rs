//! `parse_user_agent(text)`: browser, browser version, operating system and device class
//! of an HTTP User-Agent, by the rules that tell the common agents apart (the order
//! matters: Edge and Opera also say "Chrome", Chrome also says "Safari").

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder, StructArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::string_map::coerce_one_string;
use crate::arguments::{answer, argument_array};
use crate::docs::NORMALIZATION;

/// What a User-Agent says about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent {
    /// `Chrome`, `Firefox`, `Safari`, `Edge`, `Opera`, `Samsung Internet`, `Internet
    /// Explorer`, a bot's or a tool's name, or `Other`.
    pub browser: &'static str,
    /// The browser's major version, when it gives one.
    pub browser_version: Option<String>,
    /// `Windows`, `macOS`, `iOS`, `Android`, `ChromeOS`, `Linux` or `Other`.
    pub os: &'static str,
    /// `desktop`, `mobile`, `tablet` or `bot`.
    pub device: &'static str,
}

/// Browsers (and tools) by the token that names them, most specific first.
const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("Edge/", "Edge"),
    ("OPR/", "Opera"),
    ("Opera/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Version/", "Safari"),
    ("MSIE ", "Internet Explorer"),
    ("Trident/", "Internet Explorer"),
    ("curl/", "curl"),
    ("Wget/", "Wget"),
    ("python-requests/", "python-requests"),
];

/// Lower-case marks of automated clients.
const BOTS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "slurp",
    "headless",
    "curl/",
    "wget/",
    "python-requests/",
    "facebookexternalhit",
];

/// Parses a User-Agent.
pub fn parse_user_agent(text: &str) -> UserAgent {
    let lower = text.to_ascii_lowercase();
    let (browser, browser_version) = BROWSERS
        .iter()
        .find_map(|(token, name)| {
            let at = text.find(token)?;
            if *name == "Safari" && !text.contains("Safari/") {
                return None;
            }
            if *token == "Trident/" {
                return Some((
                    *name,
                    text.find("rv:")
                        .and_then(|at| major_version(&text[at + 3..])),
                ));
            }
            Some((*name, major_version(&text[at + token.len()..])))
        })
        .unwrap_or_else(|| {
            let bot = BOTS.iter().any(|mark| lower.contains(mark));
            (if bot { bot_name(text) } else { "Other" }, None)
        });
    let os = if text.contains("Windows") {
        "Windows"
    } else if text.contains("iPhone") || text.contains("iPad") || text.contains("iPod") {
        "iOS"
    } else if text.contains("Android") {
        "Android"
    } else if text.contains("CrOS") {
        "ChromeOS"
    } else if text.contains("Macintosh") || text.contains("Mac OS X") {
        "macOS"
    } else if text.contains("Linux") || text.contains("X11") {
        "Linux"
    } else {
        "Other"
    };
    let device = if BOTS.iter().any(|mark| lower.contains(mark)) {
        "bot"
    } else if text.contains("iPad")
        || text.contains("Tablet")
        || (os == "Android" && !text.contains("Mobile"))
    {
        "tablet"
    } else if text.contains("Mobi")
        || text.contains("iPhone")
        || text.contains("iPod")
        || os == "Android"
    {
        "mobile"
    } else {
        "desktop"
    };
    UserAgent {
        browser,
        browser_version,
        os,
        device,
    }
}

/// The leading digits of a version.
fn major_version(text: &str) -> Option<String> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

/// A bot's own name (`Googlebot`, `bingbot`), or `Bot`.
fn bot_name(text: &str) -> &'static str {
    const KNOWN: &[(&str, &str)] = &[
        ("googlebot", "Googlebot"),
        ("bingbot", "Bingbot"),
        ("yandexbot", "YandexBot"),
        ("duckduckbot", "DuckDuckBot"),
        ("baiduspider", "Baiduspider"),
        ("facebookexternalhit", "Facebook"),
        ("headlesschrome", "HeadlessChrome"),
    ];
    let lower = text.to_ascii_lowercase();
    KNOWN
        .iter()
        .find(|(mark, _)| lower.contains(mark))
        .map_or("Bot", |(_, name)| name)
}

fn fields() -> Fields {
    Fields::from(vec![
        Field::new("browser", DataType::Utf8, true),
        Field::new("browser_version", DataType::Utf8, true),
        Field::new("os", DataType::Utf8, true),
        Field::new("device", DataType::Utf8, true),
    ])
}

/// The `parse_user_agent` function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ParseUserAgent {
    signature: Signature,
}

impl Default for ParseUserAgent {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ParseUserAgent {
    fn name(&self) -> &str {
        "parse_user_agent"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_one_string(self.name(), arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (array, scalar) = argument_array(&args.args[0], args.number_rows)?;
        let strings = cast(&array, &DataType::Utf8)?;
        let strings = strings.as_string::<i32>();
        let mut columns: [StringBuilder; 4] = std::array::from_fn(|_| StringBuilder::new());
        for text in strings.iter() {
            match text {
                Some(text) => {
                    let agent = parse_user_agent(text);
                    columns[0].append_value(agent.browser);
                    columns[1].append_option(agent.browser_version);
                    columns[2].append_value(agent.os);
                    columns[3].append_value(agent.device);
                }
                None => columns.iter_mut().for_each(|c| c.append_null()),
            }
        }
        let arrays: Vec<ArrayRef> = columns
            .iter_mut()
            .map(|c| Arc::new(c.finish()) as ArrayRef)
            .collect();
        let out: ArrayRef = Arc::new(StructArray::try_new(
            fields(),
            arrays,
            strings.nulls().cloned(),
        )?);
        answer(out, scalar)
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOC)
    }
}

static DOC: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        NORMALIZATION,
        "What an HTTP User-Agent says about the client, as a struct: browser (Chrome, \
         Firefox, Safari, Edge, Opera, Samsung Internet, Internet Explorer, a bot's name, or \
         Other), browser_version (the major version), os (Windows, macOS, iOS, Android, \
         ChromeOS, Linux or Other) and device ('desktop', 'mobile', 'tablet' or 'bot'). \
         Read a field with ['name'].",
        "parse_user_agent(text)",
    )
    .with_sql_example(
        "```sql\n> SELECT parse_user_agent(ua)['browser'] AS browser, parse_user_agent(ua)['device'] AS device\n\
         FROM (VALUES ('Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1')) AS t(ua);\n\
         +---------+--------+\n\
         | browser | device |\n\
         +---------+--------+\n\
         | Safari  | mobile |\n\
         +---------+--------+\n```",
    )
    .with_argument("text", "The User-Agent header of a request.")
    .build()
});

#[cfg(test)]
mod tests {
    use super::parse_user_agent;

    #[test]
    fn common_agents() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
                "Chrome",
                "124",
                "Windows",
                "desktop",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
                "Edge",
                "124",
                "Windows",
                "desktop",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
                "Safari",
                "17",
                "macOS",
                "desktop",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
                "Safari",
                "17",
                "iOS",
                "mobile",
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
                "Chrome",
                "124",
                "iOS",
                "tablet",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
                "Chrome",
                "124",
                "Android",
                "mobile",
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Safari/537.36",
                "Samsung Internet",
                "24",
                "Android",
                "tablet",
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
                "Firefox",
                "125",
                "Linux",
                "desktop",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 OPR/109.0.0.0",
                "Opera",
                "109",
                "Windows",
                "desktop",
            ),
            (
                "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
                "Internet Explorer",
                "11",
                "Windows",
                "desktop",
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
                "Chrome",
                "124",
                "ChromeOS",
                "desktop",
            ),
        ];
        for (text, browser, version, os, device) in cases {
            let agent = parse_user_agent(text);
            assert_eq!(
                (
                    agent.browser,
                    agent.browser_version.as_deref(),
                    agent.os,
                    agent.device
                ),
                (browser, Some(version), os, device),
                "{text}"
            );
        }
    }

    #[test]
    fn bots_and_tools() {
        let agent = parse_user_agent(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        );
        assert_eq!((agent.browser, agent.device), ("Googlebot", "bot"));
        let agent = parse_user_agent("curl/8.5.0");
        assert_eq!(
            (
                agent.browser,
                agent.browser_version.as_deref(),
                agent.device
            ),
            ("curl", Some("8"), "bot")
        );
        let agent = parse_user_agent("");
        assert_eq!(
            (agent.browser, agent.os, agent.device),
            ("Other", "Other", "desktop")
        );
    }
}
