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

/// One sequence's completion text: committed blocks are detokenised once, incrementally, and
/// searched for the stop strings (only where a new match can start).
#[derive(Debug, Clone, Default)]
pub struct CompletionText {
    stops: Vec<String>,
    decoder: IncrementalDecoder,
    text: String,
    cut: Option<usize>,
}

impl CompletionText {
    /// Text that stops at the first of `stops` (an empty list never stops).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.to_vec(),
            ..Self::default()
        }
    }

    /// Feeds newly committed tokens; `true` when a stop string has just matched.
    pub fn push(&mut self, tokenizer: &TextTokenizer, ids: &[i64]) -> Result<bool, ModelError> {
        if self.cut.is_some() {
            return Ok(false);
        }
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut from = self.text.len().saturating_sub(longest.saturating_sub(1));
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        self.text.push_str(&self.decoder.push(tokenizer, ids)?);
        self.cut = find_stop(&self.text[from..], &self.stops).map(|at| from + at);
        Ok(self.cut.is_some())
    }

    /// The text so far, cut before a matched stop string.
    pub fn text(&self) -> &str {
        &self.text[..self.cut.unwrap_or(self.text.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::char_tokenizer::{char_vocab_size, write_char_tokenizer};
    use crate::model::SdarConfig;

    #[test]
    fn finds_a_stop_string_spanning_blocks_and_cuts_before_it() {
        let dir = tempfile::tempdir().unwrap();
        write_char_tokenizer(dir.path()).unwrap();
        let tok =
            TextTokenizer::from_dir(dir.path(), &SdarConfig::tiny(char_vocab_size())).unwrap();
        let mut text = CompletionText::new(&["<end>".into()]);
        assert!(!text.push(&tok, &tok.encode("12;<e").unwrap()).unwrap());
        assert_eq!(text.text(), "12;<e");
        assert!(text.push(&tok, &tok.encode("nd>x").unwrap()).unwrap());
        assert_eq!(text.text(), "12;");
        assert!(!text.push(&tok, &tok.encode("more").unwrap()).unwrap());
        assert_eq!(text.text(), "12;", "nothing is added after a match");
        let mut plain = CompletionText::new(&[]);
        plain.push(&tok, &tok.encode("a+b").unwrap()).unwrap();
        assert_eq!(plain.text(), "a+b");
    }
}
