//! The server's own view of a level, from its Prometheus `/metrics` before and after: the
//! generation requests it answered (by `t3d_http_requests_total`), its resident memory and the
//! KV-cache slots in use, so a request lost between client and server shows.

use crate::stats::ServerView;

/// The values read from one scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scrape {
    answered: f64,
    rss: f64,
    kv_slots_used: f64,
}

/// Reads `/metrics` of the server at `url`; `None` when it cannot be read.
pub async fn scrape(client: &reqwest::Client, url: &str) -> Option<Scrape> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(parse(&text))
}

fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if name.starts_with("t3d_http_requests_total{")
            && (name.contains("route=\"/v1/completions\"")
                || name.contains("route=\"/v1/chat/completions\""))
        {
            s.answered += value;
        } else if name == "process_resident_memory_bytes" {
            s.rss = value;
        } else if name == "t3d_kv_cache_slots_used" {
            s.kv_slots_used = value;
        }
    }
    s
}

/// The view of a level between `before` and `after`, given the answers the client counted.
pub fn view(before: Scrape, after: Scrape, client_answered: usize) -> ServerView {
    let answered = after.answered - before.answered;
    ServerView {
        requests_answered: answered,
        rss_before: before.rss,
        rss_after: after.rss,
        kv_slots_used_before: before.kv_slots_used,
        kv_slots_used_after: after.kv_slots_used,
        counts_agree: (answered - client_answered as f64).abs() < 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_generation_routes_and_reads_memory_and_slots() {
        let text = "# TYPE t3d_http_requests_total counter\n\
            t3d_http_requests_total{route=\"/v1/completions\",status=\"200\"} 10\n\
            t3d_http_requests_total{route=\"/v1/completions\",status=\"429\"} 5\n\
            t3d_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2\n\
            t3d_http_requests_total{route=\"/metrics\",status=\"200\"} 7\n\
            process_resident_memory_bytes 1.5e8\nt3d_kv_cache_slots_used 3\n";
        let after = parse(text);
        let v = view(Scrape::default(), after, 17);
        assert_eq!(
            (v.requests_answered, v.rss_after, v.kv_slots_used_after),
            (17.0, 1.5e8, 3.0)
        );
        assert!(v.counts_agree);
        assert!(
            !view(Scrape::default(), after, 16).counts_agree,
            "one lost request shows"
        );
    }
}
