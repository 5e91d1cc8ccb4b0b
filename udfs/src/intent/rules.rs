//! The rule file of `categorize_intent`, and the matcher it compiles into: every keyword
//! of every rule in one Aho-Corasick automaton, every pattern in one regex set, so a message
//! is scanned once whatever the number of rules.
//!
//! ```yaml
//! default: other              # optional: the label when no rule matches (NULL without it)
//! rules:                      # tried in order: the first rule that matches wins
//!   - label: cancel
//!     keywords: [cancel, unsubscribe, "close my account"]   # whole words, any case
//!     patterns: ['\bstop (my )?subscription\b']             # regular expressions, any case
//!   - label: pricing
//!     keywords: [price, pricing, "how much"]
//! ```

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{RegexSet, RegexSetBuilder};
use serde::Deserialize;

/// A rule file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The label when no rule matches.
    #[serde(default)]
    pub default: Option<String>,
    /// The rules, in priority order.
    pub rules: Vec<Rule>,
}

/// One intent: a label and what makes a message carry it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The label a matching message gets.
    pub label: String,
    /// Words or phrases, matched as whole words in any case.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Regular expressions (Rust syntax), matched in any case.
    #[serde(default)]
    pub patterns: Vec<String>,
}

/// Compiled rules: labels by rule index, one automaton for keywords, one set for patterns.
#[derive(Debug)]
pub struct IntentMatcher {
    labels: Vec<String>,
    default: Option<String>,
    keywords: AhoCorasick,
    /// The rule of each keyword, by the keyword's index in the automaton.
    keyword_rules: Vec<usize>,
    patterns: RegexSet,
    /// The rule of each pattern, by the pattern's index in the set.
    pattern_rules: Vec<usize>,
    /// The lowest rule index that has a pattern (no pattern can beat a keyword match of a
    /// rule before it).
    first_pattern_rule: usize,
}

impl IntentMatcher {
    /// Compiles a rule file, or says which rule is wrong and why.
    pub fn compile(file: RuleFile) -> Result<Self, String> {
        if file.rules.is_empty() {
            return Err("'rules' is empty".to_string());
        }
        let mut labels = Vec::new();
        let (mut keywords, mut keyword_rules) = (Vec::new(), Vec::new());
        let (mut patterns, mut pattern_rules) = (Vec::new(), Vec::new());
        for (index, rule) in file.rules.into_iter().enumerate() {
            let name = format!("rule {} ('{}')", index + 1, rule.label);
            if rule.label.trim().is_empty() {
                return Err(format!("rule {} has an empty label", index + 1));
            }
            if rule.keywords.is_empty() && rule.patterns.is_empty() {
                return Err(format!("{name} has neither keywords nor patterns"));
            }
            for keyword in rule.keywords {
                let keyword = keyword.trim().to_lowercase();
                if keyword.is_empty() {
                    return Err(format!("{name} has an empty keyword"));
                }
                keywords.push(keyword);
                keyword_rules.push(index);
            }
            for pattern in rule.patterns {
                if let Err(e) = regex::RegexBuilder::new(&pattern)
                    .case_insensitive(true)
                    .build()
                {
                    return Err(format!(
                        "{name}: pattern '{pattern}' is not a regular expression: {e}"
                    ));
                }
                patterns.push(pattern);
                pattern_rules.push(index);
            }
            labels.push(rule.label);
        }
        let keywords_automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&keywords)
            .map_err(|e| format!("keywords: {e}"))?;
        let pattern_set = RegexSetBuilder::new(&patterns)
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("patterns: {e}"))?;
        Ok(Self {
            labels,
            default: file.default,
            keywords: keywords_automaton,
            keyword_rules,
            first_pattern_rule: pattern_rules.iter().copied().min().unwrap_or(usize::MAX),
            patterns: pattern_set,
            pattern_rules,
        })
    }

    /// The label of the first rule `text` matches, else the default label.
    pub fn label(&self, text: &str) -> Option<&str> {
        let best = match self.best_keyword_rule(text) {
            Some(rule) if rule <= self.first_pattern_rule => Some(rule),
            keyword => {
                let pattern = self
                    .patterns
                    .matches(text)
                    .iter()
                    .map(|i| self.pattern_rules[i])
                    .min();
                match (keyword, pattern) {
                    (Some(k), Some(p)) => Some(k.min(p)),
                    (k, p) => k.or(p),
                }
            }
        };
        match best {
            Some(rule) => Some(&self.labels[rule]),
            None => self.default.as_deref(),
        }
    }

    fn best_keyword_rule(&self, text: &str) -> Option<usize> {
        if text.is_ascii() {
            self.scan_keywords(text)
        } else {
            self.scan_keywords(&text.to_lowercase())
        }
    }

    fn scan_keywords(&self, text: &str) -> Option<usize> {
        let bytes = text.as_bytes();
        let mut best: Option<usize> = None;
        for found in self.keywords.find_overlapping_iter(text) {
            let before = found.start().checked_sub(1).map(|i| bytes[i]);
            let after = bytes.get(found.end()).copied();
            if before.is_some_and(is_word_byte) || after.is_some_and(is_word_byte) {
                continue;
            }
            let rule = self.keyword_rules[found.pattern().as_usize()];
            best = Some(best.map_or(rule, |b| b.min(rule)));
            if rule == 0 {
                break;
            }
        }
        best
    }
}

/// Letters, digits, `_` and any byte of a multi-byte character: what a word is made of.
fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(yaml_rules: &str) -> Result<IntentMatcher, String> {
        let file: RuleFile =
            crate::config_file::parse_json_or_yaml("rules.yaml", yaml_rules.as_bytes())?;
        IntentMatcher::compile(file)
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = matcher(
            "default: other\nrules:\n  - label: cancel\n    keywords: [cancel]\n    patterns: ['stop (my )?subscription']\n  - label: pricing\n    keywords: [price, how much]\n",
        )
        .unwrap();
        assert_eq!(
            rules.label("How much is it? I might CANCEL."),
            Some("cancel")
        );
        assert_eq!(rules.label("how much does it cost"), Some("pricing"));
        assert_eq!(rules.label("please stop my subscription"), Some("cancel"));
        assert_eq!(rules.label("cancellation fee?"), Some("other"));
        assert_eq!(rules.label("Ünd how much?"), Some("pricing"));
    }

    #[test]
    fn broken_rules_say_what_is_wrong() {
        assert!(
            matcher("rules: []")
                .unwrap_err()
                .contains("'rules' is empty")
        );
        assert!(
            matcher("rules:\n  - label: x\n")
                .unwrap_err()
                .contains("neither keywords nor patterns")
        );
        assert!(
            matcher("rules:\n  - label: x\n    patterns: ['(']\n")
                .unwrap_err()
                .contains("pattern '(' is not a regular expression")
        );
        assert!(
            matcher("rules:\n  - label: x\n    words: [a]\n")
                .unwrap_err()
                .contains("unknown field `words`")
        );
    }
}
