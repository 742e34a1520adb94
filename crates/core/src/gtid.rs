//! MariaDB GTID positions: one `domain-server-sequence` per replication domain.

use std::collections::BTreeMap;
use std::fmt;

/// One GTID: `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

/// A GTID position (MariaDB's `gtid_*_pos`): the last GTID of each domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidPos(BTreeMap<u32, Gtid>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid GTID position {:?}", self.0)
    }
}

impl std::error::Error for ParseError {}

impl GtidPos {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut map = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || ParseError(text.to_string());
            let mut it = part.split('-');
            let (Some(d), Some(s), Some(q), None) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(bad());
            };
            let g = Gtid {
                domain: d.parse().map_err(|_| bad())?,
                server: s.parse().map_err(|_| bad())?,
                seq: q.parse().map_err(|_| bad())?,
            };
            map.insert(g.domain, g);
        }
        Ok(GtidPos(map))
    }

    pub fn get(&self, domain: u32) -> Option<&Gtid> {
        self.0.get(&domain)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Gtid> {
        self.0.values()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every transaction up to `self` is also included up to `other`: in each domain
    /// `other` is at least as far. Under `gtid_strict_mode` a domain's sequence numbers grow
    /// along a single history, so comparing sequence numbers suffices, provided the histories
    /// have not diverged (which the caller rules out with the position at promotion).
    pub fn contained_in(&self, other: &GtidPos) -> bool {
        self.0
            .values()
            .all(|g| other.get(g.domain).is_some_and(|o| o.seq >= g.seq))
    }

    /// Orders positions by how much they hold: compares the sum of sequence numbers.
    pub fn progress(&self) -> u64 {
        self.0.values().map(|g| g.seq).sum()
    }
}

impl fmt::Display for GtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .values()
            .map(|g| format!("{}-{}-{}", g.domain, g.server, g.seq))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_lists_and_empty() {
        let p = GtidPos::parse("0-100-7,1-101-3").unwrap();
        assert_eq!(p.get(0).unwrap().seq, 7);
        assert_eq!(p.get(1).unwrap().server, 101);
        assert!(GtidPos::parse("").unwrap().is_empty());
        assert!(GtidPos::parse("0-100").is_err());
        assert!(GtidPos::parse("a-b-c").is_err());
        assert_eq!(p.to_string(), "0-100-7,1-101-3");
    }

    #[test]
    fn containment_is_per_domain() {
        let a = GtidPos::parse("0-100-7").unwrap();
        assert!(a.contained_in(&GtidPos::parse("0-101-9").unwrap()));
        assert!(a.contained_in(&a));
        assert!(!a.contained_in(&GtidPos::parse("0-100-6").unwrap()));
        assert!(!a.contained_in(&GtidPos::parse("1-100-9").unwrap()));
        assert!(GtidPos::default().contained_in(&a));
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(entries in proptest::collection::btree_map(0u32..4, (0u32..300, 0u64..1_000_000), 0..4)) {
            let text: Vec<String> = entries.iter().map(|(d, (s, q))| format!("{d}-{s}-{q}")).collect();
            let pos = GtidPos::parse(&text.join(",")).unwrap();
            prop_assert_eq!(GtidPos::parse(&pos.to_string()).unwrap(), pos);
        }

        #[test]
        fn containment_is_a_preorder(a in 0u64..50, b in 0u64..50, c in 0u64..50) {
            let p = |s| GtidPos::parse(&format!("0-100-{s}")).unwrap();
            prop_assert!(p(a).contained_in(&p(a)));
            if p(a).contained_in(&p(b)) && p(b).contained_in(&p(c)) {
                prop_assert!(p(a).contained_in(&p(c)));
            }
        }
    }
}
