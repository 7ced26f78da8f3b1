//! The load generator's own CPU time, so a report shows how much of the machine the client
//! took: on loopback it shares the cores of the server it measures, and a busy client (retries
//! with back-off triple its requests) slows the server it is measuring.

use std::time::Duration;

/// CPU time the threads of this process have run so far (Linux: the sum of
/// `/proc/self/task/*/schedstat`, in nanoseconds; a thread that has exited no longer counts).
/// `None` where no thread's figure can be read (no `/proc`, or a kernel without `schedstat`), so
/// a report says "-" rather than a made-up 0.
pub fn process_cpu_time() -> Option<Duration> {
    let mut nanos: Option<u64> = None;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        // A thread may exit between the listing and the read: it is skipped.
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let ran: u64 = text.split_whitespace().next()?.parse().ok()?;
        nanos = Some(nanos.unwrap_or(0) + ran);
    }
    nanos.map(Duration::from_nanos)
}

/// CPU used between two readings, in cores over `wall`.
pub fn cores(before: Option<Duration>, after: Option<Duration>, wall: Duration) -> Option<f64> {
    let used = after?.saturating_sub(before?);
    Some(used.as_secs_f64() / wall.as_secs_f64().max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn spinning_shows_up_as_cpu_time() {
        let before = process_cpu_time().expect("/proc/self/task is readable on Linux");
        let target = Duration::from_millis(30);
        let start = Instant::now();
        let mut sum = 0u64;
        while process_cpu_time().unwrap().saturating_sub(before) < target
            && start.elapsed() < Duration::from_secs(60)
        {
            for i in 0..100_000u64 {
                sum = sum.wrapping_add(std::hint::black_box(i));
            }
        }
        std::hint::black_box(sum);
        assert!(process_cpu_time().unwrap().saturating_sub(before) >= target);
    }

    #[test]
    fn cores_divide_cpu_by_wall_time_and_need_both_readings() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(cores(Some(s(1)), Some(ms(1500)), s(2)), Some(0.25));
        assert_eq!(cores(None, Some(s(1)), s(1)), None);
        // A reading that went down (a thread exited in between) counts as no CPU, not a panic.
        assert_eq!(cores(Some(s(2)), Some(s(1)), s(1)), Some(0.0));
    }
}
