//! Several brokers in one URL: `amqp://user:pass@host1:5672,host2:5673,host3:5674/vhost`.
//!
//! The nodes of a RabbitMQ cluster are listed in the authority, separated by commas; the
//! credentials written before the first host apply to every host that names none of its own
//! (`amqp://a:x@h1,b:y@h2/` gives each host its own). The vhost and query apply to all.
//! Each connection of a transport (the publisher's, every listener's) connects to the first
//! endpoint that answers, in an order shuffled once per process so that processes spread
//! over the nodes, and on loss moves on to the next one (see the `link` module).

/// The single-host URLs of `url`, in the order written. A URL with one host gives itself.
pub(crate) fn split(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else { return vec![url.to_owned()] };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if !authority.contains(',') {
        return vec![url.to_owned()];
    }
    let mut shared_userinfo: Option<&str> = None;
    let mut urls = Vec::new();
    for (index, entry) in authority.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            continue;
        }
        let (userinfo, host) = match entry.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, entry),
        };
        if index == 0 {
            shared_userinfo = userinfo;
        }
        match userinfo.or(shared_userinfo) {
            Some(userinfo) => urls.push(format!("{scheme}://{userinfo}@{host}{tail}")),
            None => urls.push(format!("{scheme}://{host}{tail}")),
        }
    }
    if urls.is_empty() { vec![url.to_owned()] } else { urls }
}

/// One cluster URL from single-host URLs that differ only in their authority
/// (`user:pass@host:port`): `amqp://u:p@h1:5672/v` and `amqp://u:p@h2:5673/v` give
/// `amqp://u:p@h1:5672,u:p@h2:5673/v`. An error says which URL differs.
pub(crate) fn join<S: AsRef<str>>(urls: &[S]) -> Result<String, String> {
    let mut common: Option<(&str, &str)> = None;
    let mut authorities = Vec::new();
    for url in urls {
        let url = url.as_ref();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| "an endpoint is not a URL".to_owned())?;
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        match common {
            None => common = Some((scheme, tail)),
            Some(first) if first == (scheme, tail) => {}
            Some(_) => {
                return Err(format!(
                    "the endpoints differ in scheme, vhost or query (`{}`): list the nodes of one cluster",
                    eventing::transport::redact_url(url)
                ));
            }
        }
        authorities.push(authority);
    }
    let (scheme, tail) = common.ok_or_else(|| "no endpoint given".to_owned())?;
    Ok(format!("{scheme}://{}{tail}", authorities.join(",")))
}

/// `endpoints` in an order of this process's own: shuffled with a seed drawn once per
/// process, so that processes given the same list spread their connections over the nodes,
/// while every transport of one process orders the same list the same way.
pub(crate) fn shuffled(endpoints: Vec<String>) -> Vec<String> {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    shuffled_with(endpoints, *SEED.get_or_init(|| fastrand::u64(..)))
}

fn shuffled_with(mut endpoints: Vec<String>, seed: u64) -> Vec<String> {
    fastrand::Rng::with_seed(seed).shuffle(&mut endpoints);
    endpoints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_is_the_url_itself() {
        assert_eq!(split("amqp://guest:guest@127.0.0.1:5672/%2f"), ["amqp://guest:guest@127.0.0.1:5672/%2f"]);
        assert_eq!(split("amqp://localhost"), ["amqp://localhost"]);
    }

    #[test]
    fn several_hosts_share_credentials_vhost_and_query() {
        assert_eq!(
            split("amqp://user:pass@host1:5672,host2:5673,host3:5674/vhost?heartbeat=10"),
            [
                "amqp://user:pass@host1:5672/vhost?heartbeat=10",
                "amqp://user:pass@host2:5673/vhost?heartbeat=10",
                "amqp://user:pass@host3:5674/vhost?heartbeat=10",
            ]
        );
        assert_eq!(split("amqps://h1,h2"), ["amqps://h1", "amqps://h2"]);
        assert_eq!(split("amqp://u:p@h1,h2?x=1"), ["amqp://u:p@h1?x=1", "amqp://u:p@h2?x=1"]);
    }

    #[test]
    fn a_host_may_carry_its_own_credentials() {
        assert_eq!(split("amqp://a:x@h1:1,b:y@h2:2/v"), ["amqp://a:x@h1:1/v", "amqp://b:y@h2:2/v"]);
    }

    #[test]
    fn a_list_of_urls_joins_into_one_that_splits_back() {
        let urls = ["amqp://u:p@h1:5672/v", "amqp://u:q@h2:5673/v"];
        let joined = join(&urls).expect("joins");
        assert_eq!(joined, "amqp://u:p@h1:5672,u:q@h2:5673/v");
        assert_eq!(split(&joined), urls);
        let error = join(&["amqp://u:secret@h1/a", "amqp://u:secret@h2/b"]).expect_err("vhosts differ");
        assert!(error.contains("u:***@h2/b") && !error.contains("secret"), "{error}");
        assert!(join::<&str>(&[]).is_err());
    }

    #[test]
    fn empty_entries_are_ignored() {
        assert_eq!(split("amqp://u:p@h1,,h2,/v"), ["amqp://u:p@h1/v", "amqp://u:p@h2/v"]);
    }

    #[test]
    fn shuffling_keeps_every_endpoint_and_varies_the_order() {
        let endpoints: Vec<String> = (0..5).map(|n| format!("amqp://h{n}")).collect();
        let mut firsts = std::collections::HashSet::new();
        assert_eq!(shuffled(endpoints.clone()), shuffled(endpoints.clone()), "one order per process");
        for seed in 0..200 {
            let mut order = shuffled_with(endpoints.clone(), seed);
            firsts.insert(order[0].clone());
            order.sort();
            assert_eq!(order, endpoints);
        }
        assert!(firsts.len() > 1, "the first endpoint varies: {firsts:?}");
    }
}
