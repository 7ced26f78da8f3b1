//! The bundled reasoning task `arith`: multi-operand addition solved as a chain of partial sums.
//!
//! A problem is a list of operands (`17+4+32+9`); a solution adds them in **any** order, one step
//! per partial sum, and ends with the answer: `17+32=49;49+4=53;53+9=62;#62`. Every order is a
//! valid trace, so a block of the trace has many interchangeable completions whose tokens depend
//! on each other (the first operand fixes the digits after it). Decoding a block one token per
//! step picks one mode; decoding it in one step mixes modes, which is the failure T3D targets.
//!
//! Splits are fixed by hashing the sorted operands: a held-out problem (in any operand order)
//! never appears in training, whatever the seeds and counts.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Difficulty knobs of the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArithConfig {
    /// Fewest operands per problem (≥ 2).
    pub min_operands: usize,
    /// Most operands per problem.
    pub max_operands: usize,
    /// Largest operand value (operands are drawn from `1..=max_operand`).
    pub max_operand: u32,
    /// One problem in `test_modulus` (by hash) belongs to the held-out split.
    pub test_modulus: u64,
}

impl Default for ArithConfig {
    fn default() -> Self {
        Self {
            min_operands: 3,
            max_operands: 4,
            max_operand: 49,
            test_modulus: 10,
        }
    }
}

impl ArithConfig {
    /// Checks the knobs make a non-empty task.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_operands < 2 || self.min_operands > self.max_operands {
            return Err(format!(
                "operand counts {}..={} must satisfy 2 ≤ min ≤ max",
                self.min_operands, self.max_operands
            ));
        }
        if self.max_operand < 2 || self.test_modulus < 2 {
            return Err("max_operand and test_modulus must be at least 2".into());
        }
        Ok(())
    }
}

/// Which split a problem belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Problems used for training.
    Train,
    /// Held-out problems for evaluation.
    Test,
}

/// One problem: the operands in the order the question shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Operands, as asked.
    pub operands: Vec<u32>,
}

/// FNV-1a over the sorted operands: stable across platforms and Rust versions.
fn canonical_hash(operands: &[u32]) -> u64 {
    let mut sorted = operands.to_vec();
    sorted.sort_unstable();
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for byte in sorted.iter().flat_map(|v| v.to_le_bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl Problem {
    /// The user message: `17+4+32+9`.
    pub fn question(&self) -> String {
        join_operands(&self.operands)
    }

    /// The problem a question asks (`17+4+32+9`), if it is one: the inverse of [`Self::question`].
    pub fn from_question(question: &str) -> Option<Self> {
        let operands = question.trim().split('+').map(|v| v.parse().ok());
        let operands = operands.collect::<Option<Vec<u32>>>()?;
        (operands.len() >= 2).then_some(Self { operands })
    }

    /// The sum.
    pub fn answer(&self) -> u64 {
        self.operands.iter().map(|&v| u64::from(v)).sum()
    }

    /// The split this problem belongs to under `config`.
    pub fn split(&self, config: &ArithConfig) -> Split {
        if canonical_hash(&self.operands).is_multiple_of(config.test_modulus) {
            Split::Test
        } else {
            Split::Train
        }
    }

    /// The solution trace that adds the operands in `order` (a permutation of indices).
    pub fn trace(&self, order: &[usize]) -> String {
        let mut steps = Vec::with_capacity(order.len());
        let mut acc = u64::from(self.operands[order[0]]);
        for &i in &order[1..] {
            let next = acc + u64::from(self.operands[i]);
            steps.push(format!("{acc}+{}={next}", self.operands[i]));
            acc = next;
        }
        steps.push(format!("#{acc}"));
        steps.join(";")
    }

    /// A trace in a uniformly random order.
    pub fn random_trace(&self, rng: &mut impl Rng) -> String {
        let mut order: Vec<usize> = (0..self.operands.len()).collect();
        order.shuffle(rng);
        self.trace(&order)
    }
}

fn join_operands(operands: &[u32]) -> String {
    operands
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join("+")
}

/// A seeded stream of problems of one split.
pub struct ProblemStream {
    config: ArithConfig,
    split: Split,
    rng: rand::rngs::StdRng,
}

impl ProblemStream {
    /// Problems of `split`, drawn from `seed`.
    pub fn new(config: &ArithConfig, split: Split, seed: u64) -> Self {
        Self {
            config: config.clone(),
            split,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }

    /// The next problem of this stream's split (rejection sampling over the hash split).
    pub fn next_problem(&mut self) -> Problem {
        loop {
            let count = self
                .rng
                .random_range(self.config.min_operands..=self.config.max_operands);
            let operands = (0..count)
                .map(|_| self.rng.random_range(1..=self.config.max_operand))
                .collect();
            let problem = Problem { operands };
            if problem.split(&self.config) == self.split {
                return problem;
            }
        }
    }

    /// Draws `n` problems.
    pub fn take(&mut self, n: usize) -> Vec<Problem> {
        (0..n).map(|_| self.next_problem()).collect()
    }
}

/// The held-out evaluation set: the first `n` distinct test problems (as asked) of the fixed
/// evaluation seed. Stops early if the split has fewer distinct problems than `n`.
pub fn test_set(config: &ArithConfig, n: usize) -> Vec<Problem> {
    let mut stream = ProblemStream::new(config, Split::Test, EVAL_SEED);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.saturating_mul(50) {
        if out.len() == n {
            break;
        }
        let p = stream.next_problem();
        if seen.insert(p.operands.clone()) {
            out.push(p);
        }
    }
    out
}

/// Seed of the held-out evaluation set (fixed, so every report scores the same problems).
pub const EVAL_SEED: u64 = 20_260_212;

/// How a model's answer scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    /// The text ends in `#N` with N the true sum.
    pub answer_correct: bool,
    /// Every step adds two available values correctly, each operand is used exactly once and
    /// the final answer equals the last partial sum.
    pub trace_valid: bool,
}

/// Scores a completion against `problem`.
pub fn check(problem: &Problem, completion: &str) -> Score {
    let text = completion.trim();
    let final_answer = text
        .rsplit(';')
        .next()
        .and_then(|last| last.strip_prefix('#'))
        .and_then(|n| n.trim().parse::<u64>().ok());
    Score {
        answer_correct: final_answer == Some(problem.answer()),
        trace_valid: trace_is_valid(problem, text),
    }
}

fn trace_is_valid(problem: &Problem, text: &str) -> bool {
    let mut parts: Vec<&str> = text.split(';').collect();
    let Some(last) = parts.pop() else {
        return false;
    };
    let Some(Ok(claimed)) = last.strip_prefix('#').map(str::parse::<u64>) else {
        return false;
    };
    let mut unused: Vec<u64> = problem.operands.iter().map(|&v| u64::from(v)).collect();
    let mut acc: Option<u64> = None;
    for step in parts {
        let Some((lhs, rhs, sum)) = parse_step(step) else {
            return false;
        };
        let lhs_ok = match acc {
            Some(a) => a == lhs,
            None => take_one(&mut unused, lhs),
        };
        if !lhs_ok || !take_one(&mut unused, rhs) || lhs + rhs != sum {
            return false;
        }
        acc = Some(sum);
    }
    // A problem always has at least two operands, so a valid trace has at least one step.
    unused.is_empty() && acc == Some(claimed)
}

fn parse_step(step: &str) -> Option<(u64, u64, u64)> {
    let (lhs, sum) = step.split_once('=')?;
    let (a, b) = lhs.split_once('+')?;
    Some((a.parse().ok()?, b.parse().ok()?, sum.parse().ok()?))
}

fn take_one(values: &mut Vec<u64>, v: u64) -> bool {
    match values.iter().position(|&x| x == v) {
        Some(i) => {
            values.swap_remove(i);
            true
        }
        None => false,
    }
}

/// One line of the JSONL export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProblemRecord {
    /// Split of the problem.
    pub split: Split,
    /// The user message.
    pub question: String,
    /// The operands.
    pub operands: Vec<u32>,
    /// The sum.
    pub answer: u64,
    /// One reference trace (left-to-right order).
    pub reference_trace: String,
}

impl ProblemRecord {
    /// The record of `problem`.
    pub fn new(problem: &Problem, split: Split) -> Self {
        let order: Vec<usize> = (0..problem.operands.len()).collect();
        Self {
            split,
            question: problem.question(),
            operands: problem.operands.clone(),
            answer: problem.answer(),
            reference_trace: problem.trace(&order),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(ops: &[u32]) -> Problem {
        Problem {
            operands: ops.to_vec(),
        }
    }

    #[test]
    fn a_question_parses_back_to_its_problem_and_other_text_does_not() {
        let p = problem(&[17, 4, 32, 9]);
        assert_eq!(Problem::from_question(&p.question()), Some(p));
        for not_a_problem in ["17", "17+", "17+x", "What is 2+2?", ""] {
            assert_eq!(
                Problem::from_question(not_a_problem),
                None,
                "{not_a_problem:?}"
            );
        }
    }

    #[test]
    fn traces_follow_the_order_and_end_in_the_sum() {
        let p = problem(&[17, 4, 32, 9]);
        assert_eq!(p.question(), "17+4+32+9");
        assert_eq!(p.trace(&[0, 2, 1, 3]), "17+32=49;49+4=53;53+9=62;#62");
        assert_eq!(p.trace(&[3, 1, 0, 2]), "9+4=13;13+17=30;30+32=62;#62");
    }

    #[test]
    fn checker_accepts_every_order_and_rejects_bad_steps() {
        let p = problem(&[17, 4, 32, 9]);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..20 {
            let s = check(&p, &p.random_trace(&mut rng));
            assert!(s.answer_correct && s.trace_valid);
        }
        let cases = [
            ("17+32=49;49+4=53;53+9=61;#61", false, false), // wrong sum in a step
            ("17+32=49;49+4=53;53+9=62;#61", false, false), // final ≠ last partial sum
            ("17+32=49;49+4=53;#62", true, false),          // operand 9 never used
            ("17+17=34;34+4=38;38+24=62;#62", true, false), // 17 used twice, 32/9 missing
            ("17+32=49;50+4=54;54+8=62;#62", true, false),  // chain broken
            ("#62", true, false),
            ("17+32=49;49+4=53;53+9=62#62", false, false),
            ("", false, false),
        ];
        for (text, answer, valid) in cases {
            let s = check(&p, text);
            assert_eq!((s.answer_correct, s.trace_valid), (answer, valid), "{text}");
        }
    }

    #[test]
    fn splits_are_disjoint_and_ignore_operand_order() {
        let cfg = ArithConfig::default();
        let test = test_set(&cfg, 300);
        assert_eq!(test.len(), 300);
        assert!(test.iter().all(|p| p.split(&cfg) == Split::Test));
        let distinct: std::collections::HashSet<_> = test.iter().map(|p| &p.operands).collect();
        assert_eq!(distinct.len(), 300, "held-out problems are distinct");
        let keys: std::collections::HashSet<Vec<u32>> = test
            .iter()
            .map(|p| {
                let mut ops = p.operands.clone();
                ops.sort_unstable();
                ops
            })
            .collect();
        let mut train = ProblemStream::new(&cfg, Split::Train, 7);
        for _ in 0..3000 {
            let mut p = train.next_problem();
            p.operands.reverse();
            assert_eq!(
                p.split(&cfg),
                Split::Train,
                "order must not change the split"
            );
            p.operands.sort_unstable();
            assert!(!keys.contains(&p.operands));
        }
    }

    #[test]
    fn streams_are_seeded_and_respect_the_knobs() {
        let cfg = ArithConfig {
            min_operands: 2,
            max_operands: 5,
            max_operand: 9,
            test_modulus: 4,
        };
        let a = ProblemStream::new(&cfg, Split::Train, 3).take(200);
        assert_eq!(a, ProblemStream::new(&cfg, Split::Train, 3).take(200));
        assert!(a.iter().all(|p| (2..=5).contains(&p.operands.len())));
        assert!(a
            .iter()
            .flat_map(|p| &p.operands)
            .all(|&v| (1..=9).contains(&v)));
        let lens: std::collections::HashSet<usize> = a.iter().map(|p| p.operands.len()).collect();
        assert_eq!(lens.len(), 4, "all operand counts occur");
    }
}
