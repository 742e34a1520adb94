//! Galera: reading a member's last committed position, and choosing who bootstraps the
//! cluster after a full outage, without ever guessing.
//!
//! After every member stopped (`down`, or all killed), the member holding the newest committed
//! writes must form the new Primary component and the others join it. Each member's position
//! comes from its `grastate.dat` (uuid, seqno, safe_to_bootstrap), or, where seqno is -1
//! (the server did not stop cleanly), from `mariadbd --wsrep-recover`, which prints
//! `WSREP: Recovered position: <uuid>:<seqno>`. [`choose_bootstrap`] then picks the highest
//! seqno of the cluster's UUID, refuses when fewer than a majority of the members' positions
//! are known, and never picks a member with no data or another cluster's data while a member
//! with this cluster's data exists.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The fewest members a Galera cluster may have: with two, the loss of either leaves the other
/// without a majority, and Galera's quorum makes it refuse writes.
pub const MIN_MEMBERS: u32 = 3;

/// Refuses a Galera cluster too small to survive the loss of a member.
pub fn check_size(replicas: u32) -> Result<(), String> {
    if replicas < MIN_MEMBERS {
        return Err(format!(
            "a Galera cluster needs at least {MIN_MEMBERS} members to keep a quorum when one is lost; \
             {replicas} would stop taking writes at the first failure: use --replicas {MIN_MEMBERS} or more"
        ));
    }
    Ok(())
}

/// Whether a Galera member may serve clients: only when Synced (it has applied everything
/// certified) and in the Primary component (a quorum; a minority refuses writes). Err says why.
pub fn readiness(status: &myset_api::GaleraStatus) -> Result<(), String> {
    if !status.primary_component {
        return Err(format!(
            "not in the Primary component (a minority of {} member(s)); Galera refuses its writes",
            status.cluster_size
        ));
    }
    if status.state != myset_api::WsrepState::Synced {
        return Err(format!("wsrep state is {}, not synced", status.state));
    }
    Ok(())
}

/// The newest view among members in a Primary component: the highest `wsrep_cluster_conf_id`
/// they report. None when none is in one.
pub fn newest_view<'a>(
    reports: impl IntoIterator<Item = &'a myset_api::GaleraStatus>,
) -> Option<u64> {
    reports
        .into_iter()
        .filter(|g| g.primary_component)
        .map(|g| g.conf_id)
        .max()
}

/// Why a member that calls itself Synced and Primary must not serve yet: its view is older than
/// its peers' (`newest`, from [`newest_view`]). A member frozen or cut off until its peers
/// evicted it keeps reporting its old view until it notices, and reads there would miss
/// everything committed since.
pub fn stale_view(status: &myset_api::GaleraStatus, newest: Option<u64>) -> Option<String> {
    let newest = newest?;
    (status.primary_component && status.conf_id < newest).then(|| {
        format!(
            "its view ({}) is older than its peers' ({newest}): it was cut off and has not noticed yet",
            status.conf_id
        )
    })
}

/// A Galera cluster (state) UUID, lowercase canonical form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterUuid(String);

impl ClusterUuid {
    /// Parses the canonical 8-4-4-4-12 hex form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        let groups: Vec<&str> = t.split('-').collect();
        let shape_ok = groups.len() == 5
            && groups
                .iter()
                .zip([8, 4, 4, 4, 12])
                .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
        if shape_ok {
            Ok(ClusterUuid(t))
        } else {
            Err(format!("{text:?} is not a UUID"))
        }
    }

    /// The all-zero UUID: a member that never joined a cluster (or lost its state).
    pub fn is_zero(&self) -> bool {
        self.0.chars().all(|c| c == '0' || c == '-')
    }
}

impl fmt::Display for ClusterUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The contents of `grastate.dat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraState {
    pub uuid: ClusterUuid,
    /// None when the file says -1: the server did not stop cleanly, and the position must
    /// be recovered from the storage engine (`--wsrep-recover`).
    pub seqno: Option<u64>,
    /// Set only on the last member to leave the cluster cleanly.
    pub safe_to_bootstrap: bool,
}

/// Reads `grastate.dat`: `key: value` lines, `#` comments. Every field must be present and
/// well formed; nothing defaults.
pub fn parse_grastate(text: &str) -> Result<GraState, String> {
    let mut fields = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("grastate.dat: {line:?} is not `key: value`"))?;
        fields.insert(key.trim().to_string(), value.trim().to_string());
    }
    let field = |name: &str| {
        fields
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("grastate.dat has no {name}"))
    };
    let uuid = ClusterUuid::parse(field("uuid")?).map_err(|e| format!("grastate.dat: {e}"))?;
    let seqno = match field("seqno")? {
        "-1" => None,
        s => Some(
            s.parse::<u64>()
                .map_err(|_| format!("grastate.dat: seqno {s:?} is not a number"))?,
        ),
    };
    let safe_to_bootstrap = match field("safe_to_bootstrap")? {
        "0" => false,
        "1" => true,
        s => {
            return Err(format!(
                "grastate.dat: safe_to_bootstrap {s:?} is neither 0 nor 1"
            ))
        }
    };
    Ok(GraState {
        uuid,
        seqno,
        safe_to_bootstrap,
    })
}

/// A committed position: the cluster's UUID and the number of its last transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub uuid: ClusterUuid,
    pub seqno: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uuid, self.seqno)
    }
}

/// Finds `WSREP: Recovered position: <uuid>:<seqno>` in `mariadbd --wsrep-recover`'s log.
/// A seqno of -1 there means the storage engine holds no position.
pub fn parse_recovered_position(log: &str) -> Result<Option<Position>, String> {
    const MARKER: &str = "WSREP: Recovered position:";
    let found = log
        .lines()
        .filter_map(|l| l.split_once(MARKER).map(|(_, rest)| rest.trim()))
        .next_back()
        .ok_or_else(|| format!("no `{MARKER}` line in the recovery's output"))?;
    let (uuid, seqno) = found
        .rsplit_once(':')
        .ok_or_else(|| format!("recovered position {found:?} is not uuid:seqno"))?;
    let uuid = ClusterUuid::parse(uuid)?;
    match seqno {
        "-1" => Ok(None),
        s => {
            let seqno = s
                .parse::<u64>()
                .map_err(|_| format!("recovered seqno {s:?} is not a number"))?;
            Ok(Some(Position { uuid, seqno }))
        }
    }
}

/// What is known of one member's data after a full outage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberData {
    /// No data dir, or a state with the zero UUID or no position: it has nothing to offer.
    Empty,
    /// Its last committed position; `safe_to_bootstrap` as its `grastate.dat` says.
    At {
        position: Position,
        safe_to_bootstrap: bool,
    },
}

/// What [`choose_bootstrap`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// No member has any data: a brand-new cluster, bootstrapped by `ordinal` with a new UUID.
    New { ordinal: u32 },
    /// `ordinal` bootstraps from its data; the others join it.
    From {
        ordinal: u32,
        position: Position,
        /// Forced by the user although these members are known to be further ahead: their
        /// newer writes are lost.
        overriding: Vec<(u32, u64)>,
    },
    /// Nothing is started automatically; the reason says why and what to do.
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Fewer than a majority of the members' positions are known.
    TooFewKnown {
        missing: Vec<u32>,
        known: usize,
        needed: usize,
    },
    /// Members hold data of different clusters and the record names none.
    UuidsDisagree { uuids: BTreeMap<u32, ClusterUuid> },
    /// No member holds data of this cluster, but some hold another cluster's data.
    NoDataOfThisCluster { cluster: ClusterUuid },
    /// The forced member cannot bootstrap: it has no data of this cluster.
    ForcedMemberUnusable { ordinal: u32, why: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooFewKnown {
                missing,
                known,
                needed,
            } => {
                let missing: Vec<String> = missing.iter().map(u32::to_string).collect();
                write!(
                    f,
                    "only {known} members' positions are known and {needed} are needed; missing: {}. \
                     Bring them back, or run `myset up --force-bootstrap ORDINAL` to bootstrap from one \
                     member, losing any writes newer than its own",
                    missing.join(", ")
                )
            }
            Refusal::UuidsDisagree { uuids } => {
                let list: Vec<String> = uuids.iter().map(|(o, u)| format!("{o}: {u}")).collect();
                write!(
                    f,
                    "members hold data of different clusters ({}); choose with `myset up --force-bootstrap ORDINAL`",
                    list.join(", ")
                )
            }
            Refusal::NoDataOfThisCluster { cluster } => write!(
                f,
                "no member holds data of cluster {cluster}; refusing to bootstrap another cluster's or an empty member"
            ),
            Refusal::ForcedMemberUnusable { ordinal, why } => {
                write!(f, "member {ordinal} cannot bootstrap: {why}")
            }
        }
    }
}

/// Chooses who bootstraps after a full outage.
///
/// - `members`: the cluster's members; `known`: the data of those whose state could be read
///   (a member absent from it is missing);
/// - `cluster`: the cluster's UUID as recorded at its first bootstrap, if any;
/// - `force`: the user's `--force-bootstrap ORDINAL`, which skips the majority rule.
///
/// The bootstrap source holds this cluster's UUID and the highest seqno among the known
/// members; ties go to a member marked safe_to_bootstrap, then to the lowest ordinal.
pub fn choose_bootstrap(
    members: &BTreeSet<u32>,
    known: &BTreeMap<u32, MemberData>,
    cluster: Option<&ClusterUuid>,
    force: Option<u32>,
) -> Bootstrap {
    let known: BTreeMap<u32, &MemberData> = known
        .iter()
        .filter(|(o, _)| members.contains(o))
        .map(|(o, d)| (*o, d))
        .collect();
    let with_data: BTreeMap<u32, (&Position, bool)> = known
        .iter()
        .filter_map(|(o, d)| match d {
            MemberData::At {
                position,
                safe_to_bootstrap,
            } if !position.uuid.is_zero() => Some((*o, (position, *safe_to_bootstrap))),
            _ => None,
        })
        .collect();

    if with_data.is_empty() && cluster.is_none() && force.is_none() {
        // Nothing anywhere: a new cluster. Still, every member must have been read, or an
        // unread one may hold data.
        if known.len() == members.len() {
            if let Some(&first) = members.iter().next() {
                return Bootstrap::New { ordinal: first };
            }
        }
    }

    let uuid = match cluster {
        Some(u) => u.clone(),
        None => {
            let uuids: BTreeSet<&ClusterUuid> = with_data.values().map(|(p, _)| &p.uuid).collect();
            match uuids.len() {
                0 => {
                    let missing: Vec<u32> = members
                        .iter()
                        .copied()
                        .filter(|o| !known.contains_key(o))
                        .collect();
                    return Bootstrap::Refused(Refusal::TooFewKnown {
                        known: known.len(),
                        needed: members.len(),
                        missing,
                    });
                }
                1 => (*uuids.iter().next().expect("one")).clone(),
                _ if force.is_some() => with_data
                    .get(&force.expect("checked"))
                    .map(|(p, _)| p.uuid.clone())
                    .unwrap_or_else(|| (*uuids.iter().next().expect("several")).clone()),
                _ => {
                    return Bootstrap::Refused(Refusal::UuidsDisagree {
                        uuids: with_data
                            .iter()
                            .map(|(o, (p, _))| (*o, p.uuid.clone()))
                            .collect(),
                    })
                }
            }
        }
    };
    let candidates: BTreeMap<u32, (u64, bool)> = with_data
        .iter()
        .filter(|(_, (p, _))| p.uuid == uuid)
        .map(|(o, (p, safe))| (*o, (p.seqno, *safe)))
        .collect();

    if let Some(ordinal) = force {
        let Some(&(seqno, _)) = candidates.get(&ordinal) else {
            let why = match known.get(&ordinal) {
                None if !members.contains(&ordinal) => "it is not a member".to_string(),
                None => "its position could not be read".to_string(),
                Some(MemberData::Empty) => "it holds no data".to_string(),
                Some(MemberData::At { position, .. }) => {
                    format!("its data belongs to cluster {}, not {uuid}", position.uuid)
                }
            };
            return Bootstrap::Refused(Refusal::ForcedMemberUnusable { ordinal, why });
        };
        let overriding = candidates
            .iter()
            .filter(|(o, (s, _))| **o != ordinal && *s > seqno)
            .map(|(o, (s, _))| (*o, *s))
            .collect();
        return Bootstrap::From {
            ordinal,
            position: Position { uuid, seqno },
            overriding,
        };
    }

    let needed = members.len() / 2 + 1;
    if known.len() < needed {
        return Bootstrap::Refused(Refusal::TooFewKnown {
            missing: members
                .iter()
                .copied()
                .filter(|o| !known.contains_key(o))
                .collect(),
            known: known.len(),
            needed,
        });
    }
    let best = candidates
        .iter()
        .max_by(|(oa, (sa, safe_a)), (ob, (sb, safe_b))| {
            sa.cmp(sb)
                .then(safe_a.cmp(safe_b))
                // Lower ordinals win ties: reversed, since max_by keeps the greatest.
                .then(ob.cmp(oa))
        })
        .map(|(o, (s, _))| (*o, *s));
    match best {
        Some((ordinal, seqno)) => Bootstrap::From {
            ordinal,
            position: Position { uuid, seqno },
            overriding: Vec::new(),
        },
        None => Bootstrap::Refused(Refusal::NoDataOfThisCluster { cluster: uuid }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const U1: &str = "6a1f6a7e-1234-11ef-9b2c-0242ac120002";
    const U2: &str = "0f3c2b1a-9876-11ef-8a1b-0242ac120003";
    const ZERO: &str = "00000000-0000-0000-0000-000000000000";

    fn uuid(s: &str) -> ClusterUuid {
        ClusterUuid::parse(s).unwrap()
    }

    fn at(u: &str, seqno: u64) -> MemberData {
        MemberData::At {
            position: Position {
                uuid: uuid(u),
                seqno,
            },
            safe_to_bootstrap: false,
        }
    }

    fn members(n: u32) -> BTreeSet<u32> {
        (0..n).collect()
    }

    #[test]
    fn grastate_is_read_strictly() {
        let clean = format!(
            "# GALERA saved state\nversion: 2.1\nuuid:    {U1}\nseqno:   42\nsafe_to_bootstrap: 1\n"
        );
        assert_eq!(
            parse_grastate(&clean).unwrap(),
            GraState {
                uuid: uuid(U1),
                seqno: Some(42),
                safe_to_bootstrap: true
            }
        );
        let crashed = format!("uuid: {U1}\nseqno: -1\nsafe_to_bootstrap: 0\n");
        assert_eq!(parse_grastate(&crashed).unwrap().seqno, None);
        for bad in [
            format!("uuid: {U1}\nseqno: 42\n"),
            "uuid: not-a-uuid\nseqno: 1\nsafe_to_bootstrap: 0\n".to_string(),
            format!("uuid: {U1}\nseqno: many\nsafe_to_bootstrap: 0\n"),
            format!("uuid: {U1}\nseqno: 1\nsafe_to_bootstrap: yes\n"),
            "garbage".to_string(),
        ] {
            assert!(parse_grastate(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_recovered_position_is_read_from_the_log() {
        let log = format!(
            "2026-11-22  6:00:00 0 [Note] WSREP: Recovered position: {ZERO}:-1\n\
             2026-11-22  6:00:01 0 [Note] WSREP: Recovered position: {U1}:1234\n"
        );
        assert_eq!(
            parse_recovered_position(&log).unwrap(),
            Some(Position {
                uuid: uuid(U1),
                seqno: 1234
            })
        );
        let none = format!("[Note] WSREP: Recovered position: {U1}:-1\n");
        assert_eq!(parse_recovered_position(&none).unwrap(), None);
        assert!(parse_recovered_position("[ERROR] Aborting").is_err());
        assert!(parse_recovered_position("WSREP: Recovered position: x:1").is_err());
    }

    #[test]
    fn a_cluster_with_no_data_anywhere_is_new() {
        let known = (0..3).map(|o| (o, MemberData::Empty)).collect();
        assert_eq!(
            choose_bootstrap(&members(3), &known, None, None),
            Bootstrap::New { ordinal: 0 }
        );
        // An unread member may hold data: not new.
        let partial: BTreeMap<u32, MemberData> = (0..2).map(|o| (o, MemberData::Empty)).collect();
        assert!(matches!(
            choose_bootstrap(&members(3), &partial, None, None),
            Bootstrap::Refused(_)
        ));
    }

    #[test]
    fn the_highest_seqno_bootstraps_never_blindly_ordinal_0() {
        let known = BTreeMap::from([(0, at(U1, 7)), (1, at(U1, 9)), (2, at(U1, 8))]);
        assert!(matches!(
            choose_bootstrap(&members(3), &known, Some(&uuid(U1)), None),
            Bootstrap::From { ordinal: 1, ref position, .. } if position.seqno == 9
        ));
    }

    #[test]
    fn empty_zero_and_foreign_members_never_bootstrap_while_data_exists() {
        let known = BTreeMap::from([
            (0, MemberData::Empty),
            (1, at(ZERO, 100)),
            (2, at(U2, 500)),
            (3, at(U1, 3)),
        ]);
        assert!(matches!(
            choose_bootstrap(&members(4), &known, Some(&uuid(U1)), None),
            Bootstrap::From { ordinal: 3, .. }
        ));
        // Without a recorded UUID, two clusters' data is a question for a human.
        assert!(matches!(
            choose_bootstrap(&members(4), &known, None, None),
            Bootstrap::Refused(Refusal::UuidsDisagree { .. })
        ));
    }

    #[test]
    fn fewer_than_a_majority_known_is_refused_naming_the_missing() {
        let known = BTreeMap::from([(0, at(U1, 10))]);
        let decision = choose_bootstrap(&members(3), &known, Some(&uuid(U1)), None);
        let Bootstrap::Refused(refusal) = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(
            refusal,
            Refusal::TooFewKnown {
                missing: vec![1, 2],
                known: 1,
                needed: 2
            }
        );
        let text = refusal.to_string();
        assert!(
            text.contains("missing: 1, 2") && text.contains("--force-bootstrap"),
            "{text}"
        );
    }

    #[test]
    fn forcing_names_the_writes_it_loses() {
        let known = BTreeMap::from([(0, at(U1, 10)), (2, at(U1, 12))]);
        assert_eq!(
            choose_bootstrap(&members(5), &known, Some(&uuid(U1)), Some(0)),
            Bootstrap::From {
                ordinal: 0,
                position: Position {
                    uuid: uuid(U1),
                    seqno: 10
                },
                overriding: vec![(2, 12)]
            }
        );
        assert!(matches!(
            choose_bootstrap(&members(5), &known, Some(&uuid(U1)), Some(1)),
            Bootstrap::Refused(Refusal::ForcedMemberUnusable { ordinal: 1, .. })
        ));
    }

    #[test]
    fn ties_go_to_safe_to_bootstrap_then_the_lowest_ordinal() {
        let mut known = BTreeMap::from([(0, at(U1, 5)), (1, at(U1, 5)), (2, at(U1, 5))]);
        assert!(matches!(
            choose_bootstrap(&members(3), &known, Some(&uuid(U1)), None),
            Bootstrap::From { ordinal: 0, .. }
        ));
        known.insert(
            2,
            MemberData::At {
                position: Position {
                    uuid: uuid(U1),
                    seqno: 5,
                },
                safe_to_bootstrap: true,
            },
        );
        assert!(matches!(
            choose_bootstrap(&members(3), &known, Some(&uuid(U1)), None),
            Bootstrap::From { ordinal: 2, .. }
        ));
    }

    fn view(primary: bool, conf_id: u64) -> myset_api::GaleraStatus {
        myset_api::GaleraStatus {
            state: myset_api::WsrepState::Synced,
            primary_component: primary,
            cluster_size: 3,
            seqno: 10,
            cluster_uuid: U1.into(),
            conf_id,
        }
    }

    #[test]
    fn a_member_behind_its_peers_view_does_not_serve() {
        // Two members moved on to view 5 after evicting a frozen third, still at view 4.
        let reports = [view(true, 5), view(true, 5), view(true, 4)];
        let newest = newest_view(&reports);
        assert_eq!(newest, Some(5));
        assert!(stale_view(&reports[0], newest).is_none());
        let stale = stale_view(&reports[2], newest).expect("the thawed member is stale");
        assert!(stale.contains("(4)") && stale.contains("(5)"), "{stale}");
        // A minority's view does not count, nor is a member outside the component "stale"
        // (readiness already refuses it).
        let minority = [view(false, 9), view(true, 3)];
        assert_eq!(newest_view(&minority), Some(3));
        assert!(stale_view(&minority[0], Some(3)).is_none());
        assert_eq!(newest_view(&[view(false, 2)]), None);
        assert!(stale_view(&view(true, 1), None).is_none());
    }

    fn member_data() -> impl Strategy<Value = Option<MemberData>> {
        prop_oneof![
            Just(None),
            Just(Some(MemberData::Empty)),
            (0u64..20, any::<bool>(), 0u8..3).prop_map(|(seqno, safe, which)| {
                let u = [U1, U2, ZERO][which as usize];
                Some(MemberData::At {
                    position: Position {
                        uuid: uuid(u),
                        seqno,
                    },
                    safe_to_bootstrap: safe,
                })
            }),
        ]
    }

    proptest! {
        #[test]
        fn the_choice_is_always_safe(
            states in proptest::collection::vec(member_data(), 1..7),
            recorded in any::<bool>(),
        ) {
            let members: BTreeSet<u32> = (0..states.len() as u32).collect();
            let known: BTreeMap<u32, MemberData> = states
                .iter()
                .enumerate()
                .filter_map(|(o, d)| d.clone().map(|d| (o as u32, d)))
                .collect();
            let cluster = recorded.then(|| uuid(U1));
            match choose_bootstrap(&members, &known, cluster.as_ref(), None) {
                Bootstrap::New { ordinal } => {
                    // Only when every member was read and none holds any data.
                    prop_assert_eq!(known.len(), members.len());
                    prop_assert!(cluster.is_none());
                    let nothing_anywhere = known.values().all(|d| match d {
                        MemberData::Empty => true,
                        MemberData::At { position, .. } => position.uuid.is_zero(),
                    });
                    prop_assert!(nothing_anywhere);
                    prop_assert_eq!(ordinal, 0);
                }
                Bootstrap::From { ordinal, position, overriding } => {
                    prop_assert!(overriding.is_empty());
                    prop_assert!(known.len() > members.len() / 2, "a majority was known");
                    prop_assert!(!position.uuid.is_zero());
                    if let Some(c) = &cluster {
                        prop_assert_eq!(&position.uuid, c);
                    }
                    // The chosen one holds exactly that position...
                    let chosen_ok = matches!(
                        known.get(&ordinal),
                        Some(MemberData::At { position: p, .. }) if *p == position
                    );
                    prop_assert!(chosen_ok);
                    // ...and no known member of that cluster is further ahead.
                    for d in known.values() {
                        if let MemberData::At { position: p, .. } = d {
                            if p.uuid == position.uuid {
                                prop_assert!(p.seqno <= position.seqno);
                            }
                        }
                    }
                }
                Bootstrap::Refused(_) => {}
            }
        }
    }
}
