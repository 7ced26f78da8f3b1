//! Streaming a sequence's completion text (which the sequence detokenises itself, once): what
//! has been sent so far, and, while stop strings may still match across the next block, the
//! tail that could start one is held back, so a client never receives text that the final
//! response cuts off.

/// Send position within one request's completion text.
#[derive(Debug, Default)]
pub struct TextStream {
    sent: usize,
    holdback: usize,
}

impl TextStream {
    /// A stream whose stop strings are `stops` (the longest sets how much is held back).
    pub fn new(stops: &[String]) -> Self {
        let longest = stops.iter().map(String::len).max().unwrap_or(0);
        Self {
            sent: 0,
            holdback: longest.saturating_sub(1),
        }
    }

    /// The new part of `text` (the completion so far) that is safe to send while it goes on.
    pub fn ready(&mut self, text: &str) -> String {
        let mut end = text.len().saturating_sub(self.holdback).max(self.sent);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.take_until(text, end)
    }

    /// Everything not yet sent of the final `text` (already cut before a matched stop string).
    pub fn finish(&mut self, text: &str) -> String {
        self.take_until(text, text.len())
    }

    fn take_until(&mut self, text: &str, end: usize) -> String {
        if end <= self.sent {
            return String::new();
        }
        let out = text[self.sent..end].to_string();
        self.sent = end;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_stop_strings_every_block_is_sent_at_once() {
        let mut s = TextStream::new(&[]);
        assert_eq!(s.ready("ab+c"), "ab+c");
        assert_eq!(s.ready("ab+c=5;#"), "=5;#");
        assert_eq!(s.finish("ab+c=5;#"), "");
    }

    #[test]
    fn a_possible_stop_prefix_is_held_back_and_never_sent_past_the_cut() {
        // Stop "END", holdback 2: "12;E" sends "12".
        let mut s = TextStream::new(&["END".into()]);
        assert_eq!(s.ready("12;E"), "12");
        // The next block completes "END": the sequence cut its text to "12;".
        assert_eq!(s.finish("12;"), ";");
        assert_eq!(s.finish("12;"), "");
        // Without a match, the held-back tail is sent at the end.
        let mut t = TextStream::new(&["END".into()]);
        assert_eq!(t.ready("7;EN"), "7;");
        assert_eq!(t.finish("7;EN"), "EN");
    }

    #[test]
    fn never_splits_a_character() {
        let mut s = TextStream::new(&["xyz".into()]);
        // "a世" is 4 bytes; holding back 2 bytes would land inside 世.
        assert_eq!(s.ready("a世"), "a");
        assert_eq!(s.finish("a世"), "世");
    }
}
