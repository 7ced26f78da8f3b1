//! Stop strings: text-level stopping with the OpenAI contract (the returned text ends right
//! before the first match). Tokens arrive a committed block at a time and are detokenised
//! incrementally, so a stop string spanning two blocks is still found.

use crate::model::tokenizer::{IncrementalDecoder, TextTokenizer};
use crate::model::ModelError;

/// Byte offset of the earliest occurrence of any of `stops` in `text`.
///
/// ```
/// use t3d::engine::stop::find_stop;
/// assert_eq!(find_stop("a=3\n#3<end>", &["#".into(), "<end>".into()]), Some(4));
/// assert_eq!(find_stop("abc", &["x".into()]), None);
/// ```
pub fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

/// Watches one sequence's text for its stop strings.
#[derive(Debug, Clone, Default)]
pub struct StopStringMatcher {
    stops: Vec<String>,
    decoder: IncrementalDecoder,
    text: String,
    cut: Option<usize>,
}

impl StopStringMatcher {
    /// A matcher for `stops` (an empty list never matches and never detokenises).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.to_vec(),
            ..Self::default()
        }
    }

    /// Feeds newly committed tokens; `true` when a stop string has just matched.
    pub fn push(&mut self, tokenizer: &TextTokenizer, ids: &[i64]) -> Result<bool, ModelError> {
        if self.stops.is_empty() || self.cut.is_some() {
            return Ok(false);
        }
        self.text.push_str(&self.decoder.push(tokenizer, ids)?);
        self.cut = find_stop(&self.text, &self.stops);
        Ok(self.cut.is_some())
    }

    /// The text before the match, once a stop string matched.
    pub fn cut_text(&self) -> Option<&str> {
        self.cut.map(|c| &self.text[..c])
    }
}
