//! Per-request streaming text: committed blocks are detokenised incrementally, and while stop
//! strings may still match, the tail that could be the start of one is held back, so a client
//! never receives text that the final response cuts off.

use crate::model::tokenizer::IncrementalDecoder;
use crate::model::{ModelError, TextTokenizer};

/// Streaming detokeniser of one request.
#[derive(Debug, Default)]
pub struct TextStream {
    decoder: IncrementalDecoder,
    text: String,
    sent: usize,
    holdback: usize,
}

impl TextStream {
    /// A stream whose stop strings are `stops` (the longest sets how much is held back).
    pub fn new(stops: &[String]) -> Self {
        let longest = stops.iter().map(String::len).max().unwrap_or(0);
        Self {
            holdback: longest.saturating_sub(1),
            ..Self::default()
        }
    }

    /// Feeds a committed block.
    pub fn push(&mut self, tokenizer: &TextTokenizer, ids: &[i64]) -> Result<(), ModelError> {
        self.text.push_str(&self.decoder.push(tokenizer, ids)?);
        Ok(())
    }

    /// The text that is safe to send now (while the sequence goes on).
    pub fn ready(&mut self) -> String {
        let mut end = self.text.len().saturating_sub(self.holdback).max(self.sent);
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        self.take_until(end)
    }

    /// The rest of the text once the sequence finished; `cut` is the text before a matched
    /// stop string, if one matched.
    pub fn finish(&mut self, cut: Option<&str>) -> String {
        let end = cut.map_or(self.text.len(), str::len).max(self.sent);
        let end = end.min(self.text.len());
        self.take_until(end)
    }

    fn take_until(&mut self, end: usize) -> String {
        if end <= self.sent {
            return String::new();
        }
        let out = self.text[self.sent..end].to_string();
        self.sent = end;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::char_tokenizer::{char_vocab_size, write_char_tokenizer};
    use crate::model::SdarConfig;

    fn tokenizer() -> (tempfile::TempDir, TextTokenizer) {
        let dir = tempfile::tempdir().unwrap();
        write_char_tokenizer(dir.path()).unwrap();
        let tok =
            TextTokenizer::from_dir(dir.path(), &SdarConfig::tiny(char_vocab_size())).unwrap();
        (dir, tok)
    }

    #[test]
    fn without_stop_strings_every_block_is_sent_at_once() {
        let (_d, tok) = tokenizer();
        let mut s = TextStream::new(&[]);
        s.push(&tok, &tok.encode("ab+c").unwrap()).unwrap();
        assert_eq!(s.ready(), "ab+c");
        s.push(&tok, &tok.encode("=5;#").unwrap()).unwrap();
        assert_eq!(s.ready(), "=5;#");
        assert_eq!(s.finish(None), "");
    }

    #[test]
    fn a_possible_stop_prefix_is_held_back_and_never_sent_past_the_cut() {
        let (_d, tok) = tokenizer();
        let mut s = TextStream::new(&["END".into()]);
        // Holdback 2: "12;E" sends "12".
        s.push(&tok, &tok.encode("12;E").unwrap()).unwrap();
        assert_eq!(s.ready(), "12");
        // The next block completes "END" (the engine cut the text at byte 3): only ";" is left.
        s.push(&tok, &tok.encode("ND;x").unwrap()).unwrap();
        assert_eq!(s.finish(Some("12;")), ";");
        assert_eq!(s.finish(Some("12;")), "");
        // Without a match, the held-back tail is sent at the end.
        let mut t = TextStream::new(&["END".into()]);
        t.push(&tok, &tok.encode("7;EN").unwrap()).unwrap();
        assert_eq!(t.ready(), "7;");
        assert_eq!(t.finish(None), "EN");
    }
}
