//! A fleet-wide connection budget for one backend (decision 48): the sum
//! over the fleet of connections to the backend stays within
//! `fleet_max_connections`.
//!
//! Each node holds a **claim**: the connections it may have open to the
//! backend. It reports the claim with its count, and a node opens a new
//! connection only while its exact count is below its claim. The claim is
//! re-decided from the fleet's claims, never from counts alone, because a
//! count says nothing of what its node is about to open:
//! - *free* = budget − Σ peers' claims − own count, over the peers this
//!   node *hears*: those whose report of the backend is fresh; a member
//!   SWIM holds alive whose report is not fresh (lost, cut off one way, or
//!   crashed and not yet declared down) is taken to claim its fair part,
//!   budget ÷ fleet size;
//! - a node may take at most its part of *free*, `free ÷ n` rounded by
//!   rank (the first `free mod n` nodes in address order take one more),
//!   so `n` nodes holding the same view, stale or not, take at most *free*
//!   together;
//! - it takes it when a client finds the count at the claim (a *raise*)
//!   and publishes the raised claim at once (the driver sees
//!   [`Budget::has_unpublished_raise`] through the pool and calls
//!   [`crate::node::Node::handle_budget_raised`]);
//! - raises go in **rounds**: every claim carries the newest raise clock
//!   its node has seen ([`Claim::clock`]), a raise is the round after the
//!   newest this node has seen, and a node raises only once every peer it
//!   hears has published that clock (a node that sees a newer clock
//!   publishes at once: [`Budget::needs_ack`]). So the view a raise of
//!   round `r` is computed on holds every raise of the rounds before, and
//!   the raises of one round, each its rank's part of what its view calls
//!   free, add up to at most what was free, however the views differ
//!   (`tests/budget_model.rs`). A client that only waits for the round
//!   ([`Budget::waits_for_round`]) may be held by the driver, at most
//!   [`ROUND_WAIT_MAX`];
//!   at each periodic report, the claim shrinks to the count
//!   plus the clients that arrived since the last report (the share
//!   follows demand: an idle node holds only what it has open), and when
//!   the claims it hears exceed the budget (after a partition heals) it
//!   gives back its part of the excess. A report never raises a claim, so
//!   every claim's growth is a raise that its peers count once they hear
//!   of it.
//!
//! **A node cut off from most of the fleet** (the nodes it hears, itself
//! included, at most half of the largest fleet seen within the hold,
//! [`crate::node::Settings::budget_hold`]) cannot tell a partition from
//! the others' crash, so it falls back to its fair part of the budget
//! (budget ÷ that largest fleet, by rank) and borrows nothing. The side
//! holding a majority treats the missing nodes as crashed and takes their
//! claims back: so a crash returns its node's share as soon as the node
//! is declared down, and a partition costs at most the minority's
//! holdings on top of the budget (see decision 48 for the figures).
//!
//! The state lives in the [`crate::pool::Pool`], one [`Budget`] per
//! backend; the [`crate::node::Node`] writes the fleet's side into it
//! ([`BudgetView`]) and reads the claim when it reports.

/// The fleet as one backend's budget sees it (written by the node).
/// `fleet_nodes` follows SWIM's live count (held); the rest follows the
/// reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetView {
    /// Σ of the claims of the peers this node hears (fresh reports), plus
    /// the fair part of each live member it does not hear.
    pub peer_claims: u64,
    /// The nodes this node hears, itself included: the free budget is
    /// split this many ways.
    pub live_nodes: u32,
    /// The largest fleet seen within the hold, this node included: the
    /// fair part is budget ÷ this.
    pub fleet_nodes: u32,
    /// This node's place among the nodes it hears, in address order (0
    /// first).
    pub rank: u32,
    /// The oldest raise clock among the peers it hears (`u32::MAX` with
    /// none): every peer has seen every raise up to this clock.
    pub clock_min: u32,
    /// The newest raise clock among the peers it hears.
    pub clock_max: u32,
}

impl Default for BudgetView {
    /// Alone, as a node starts.
    fn default() -> Self {
        BudgetView {
            peer_claims: 0,
            live_nodes: 1,
            fleet_nodes: 1,
            rank: 0,
            clock_min: u32::MAX,
            clock_max: 0,
        }
    }
}

/// What a node publishes of one backend's budget, in its report entry.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Claim {
    /// The connections it may hold.
    pub connections: u32,
    /// The newest raise clock it has seen (its own raises included).
    pub clock: u32,
}

impl BudgetView {
    /// The view of a node that hears `peers` (their newest publications),
    /// with `live` nodes heard in all (itself included), the largest fleet
    /// `fleet` and its `rank`.
    pub fn from_peers(peers: &[Claim], live: u32, fleet: u32, rank: u32) -> Self {
        BudgetView {
            peer_claims: peers.iter().map(|p| u64::from(p.connections)).sum(),
            live_nodes: live,
            fleet_nodes: fleet,
            rank,
            clock_min: peers.iter().map(|p| p.clock).min().unwrap_or(u32::MAX),
            clock_max: peers.iter().map(|p| p.clock).max().unwrap_or(0),
        }
    }

    /// Whether this node sees at most half of the fleet: cut off, or the
    /// rest crashed, which it cannot tell apart.
    pub fn is_cut_off(&self) -> bool {
        u64::from(self.live_nodes) * 2 <= u64::from(self.fleet_nodes) && self.fleet_nodes > 1
    }
}

/// How long a driver may hold a client that only waits for the fleet's
/// next round of raises ([`Budget::waits_for_round`]) before refusing it:
/// a round is one hop and back, so this covers a LAN many times over and
/// bounds what a client can be made to wait.
pub const ROUND_WAIT_MAX: std::time::Duration = std::time::Duration::from_millis(100);

/// `total` split `n` ways, the part of the node of rank `rank`: the first
/// `total mod n` ranks take one more, so the parts of ranks `0..n` add up
/// to `total` exactly.
pub fn part(total: u64, n: u32, rank: u32) -> u64 {
    let n = u64::from(n.max(1));
    total / n + u64::from(u64::from(rank) < total % n)
}

/// One backend's budget on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    limit: u32,
    claim: u64,
    /// The newest raise clock seen, this node's own raises included.
    clock: u32,
    /// The clock of the last publication.
    published_clock: u32,
    /// Connections opened since the last report: the demand the next
    /// claim follows.
    arrivals: u64,
    view: BudgetView,
    refused: u64,
    /// The claim of the last report.
    reported: u32,
    /// A raise not published yet.
    unpublished: bool,
}

impl Budget {
    /// A budget of `limit` connections fleet-wide; the node starts alone,
    /// claiming nothing.
    pub fn new(limit: u32) -> Self {
        Budget {
            limit,
            claim: 0,
            clock: 0,
            published_clock: 0,
            arrivals: 0,
            view: BudgetView::default(),
            refused: 0,
            reported: 0,
            unpublished: false,
        }
    }

    /// The fleet-wide limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// This node's fair part: the budget split over the largest fleet
    /// seen, by rank.
    pub fn fair(&self) -> u64 {
        part(
            u64::from(self.limit),
            self.view.fleet_nodes,
            self.view.rank.min(self.view.fleet_nodes.saturating_sub(1)),
        )
    }

    /// The connections this node may hold now (its share): the claim, or
    /// the fair part when cut off.
    pub fn share(&self) -> u64 {
        if self.view.is_cut_off() {
            self.fair()
        } else {
            self.claim
        }
    }

    /// What this node would claim if it raised now with `active` open.
    fn raised_claim(&self, active: u32) -> u64 {
        let free = u64::from(self.limit)
            .saturating_sub(self.view.peer_claims)
            .saturating_sub(u64::from(active));
        u64::from(active) + part(free, self.view.live_nodes, self.view.rank)
    }

    /// Whether a raise may be taken: every peer has published a clock at
    /// least that of this node's last raise, so its claim as heard here
    /// holds every raise it took before it saw ours.
    fn may_raise(&self) -> bool {
        !self.view.is_cut_off() && self.view.clock_min >= self.clock
    }

    /// Whether this node has seen a raise clock it has not published yet:
    /// peers waiting to raise again wait for it.
    pub fn needs_ack(&self) -> bool {
        self.clock > self.published_clock
    }

    /// Whether a new connection fits, with `active` open here: below the
    /// share, or below what a raise would give if none was taken since
    /// the last report.
    pub fn admits(&self, active: u32) -> bool {
        let a = u64::from(active);
        if self.view.is_cut_off() {
            return a < self.fair();
        }
        a < self.claim || (self.may_raise() && a < self.raised_claim(active))
    }

    /// Whether a client refused now would be admitted once every peer has
    /// seen this node's last raise: the driver may hold it for the round
    /// (at most [`ROUND_WAIT_MAX`]) instead of refusing it.
    pub fn waits_for_round(&self, active: u32) -> bool {
        !self.admits(active)
            && !self.view.is_cut_off()
            && u64::from(active) < self.raised_claim(active)
    }

    /// The refusals this budget caused (clients for whom it was the only
    /// thing in the way at this backend).
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Whether a raise waits to be published.
    pub fn has_unpublished_raise(&self) -> bool {
        self.unpublished
    }

    /// The claim the last report carried.
    pub fn reported(&self) -> Claim {
        Claim {
            connections: self.reported,
            clock: self.published_clock,
        }
    }

    /// The fleet's view, as last written.
    pub fn view(&self) -> BudgetView {
        self.view
    }

    // ----- inputs -----

    /// A connection was opened with `active` open before it (it was
    /// admitted): takes the raise if the claim was reached; true if so
    /// (publish it at once).
    pub fn handle_open(&mut self, active: u32) -> bool {
        self.arrivals += 1;
        if self.may_raise() && u64::from(active) >= self.claim {
            self.claim = self.raised_claim(active);
            self.clock += 1;
            self.unpublished = true;
            return true;
        }
        false
    }

    /// A client could not have this backend because of the budget alone.
    pub fn handle_refused(&mut self) {
        self.refused += 1;
    }

    /// The fleet's side changed (a peer's report arrived, or membership
    /// changed): a raise is allowed again, decided on this newer view.
    pub fn set_view(&mut self, view: BudgetView) {
        self.view = view;
        self.clock = self.clock.max(view.clock_max);
    }

    /// This node reports now, with `active` open; `periodic` for the
    /// report of each interval, not for one published at once (a raise, a
    /// health flip, a drain). A periodic report shrinks the claim to the
    /// count plus the demand since the last periodic report (never below
    /// the count: open connections are held) and allows the next raise. A
    /// report never raises the claim: every growth is a raise, published
    /// at once. Returns the claim to report.
    pub fn handle_report(&mut self, active: u32, periodic: bool) -> Claim {
        if periodic {
            let a = u64::from(active);
            let mut claim = self.claim.min(a + self.arrivals);
            // Over-subscribed (after a partition heals, both sides' claims
            // meet): each node gives back its part of the excess, so the
            // fleet's claims are within the budget again after one round;
            // open connections stay, none replaces them until then.
            let over = (self.view.peer_claims + claim).saturating_sub(u64::from(self.limit));
            if over > 0 && !self.view.is_cut_off() {
                claim = claim.saturating_sub(part(over, self.view.live_nodes, self.view.rank));
            }
            self.claim = claim.max(a);
            self.arrivals = 0;
        }
        self.unpublished = false;
        self.reported = u32::try_from(self.claim).unwrap_or(u32::MAX);
        self.published_clock = self.clock;
        self.reported()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view whose peers have all seen raise clock `clock` (and none
    /// newer).
    fn view_at(peer_claims: u64, live: u32, fleet: u32, rank: u32, clock: u32) -> BudgetView {
        BudgetView {
            peer_claims,
            live_nodes: live,
            fleet_nodes: fleet,
            rank,
            clock_min: clock,
            clock_max: clock,
        }
    }

    fn view(peer_claims: u64, live: u32, fleet: u32, rank: u32) -> BudgetView {
        view_at(peer_claims, live, fleet, rank, 0)
    }

    #[test]
    fn parts_add_up_to_the_whole() {
        for total in [0, 1, 2, 29, 30, 31, 1000] {
            for n in 1..7 {
                let sum: u64 = (0..n).map(|r| part(total, n, r)).sum();
                assert_eq!(sum, total, "{total} over {n}");
            }
        }
    }

    /// Nodes that all hold the same view, each raising when a client
    /// arrives, never claim more than the budget together, however the
    /// arrivals fall.
    #[test]
    fn nodes_with_one_stale_view_take_the_free_budget_once() {
        for n in 1..6u32 {
            let mut nodes: Vec<Budget> = (0..n)
                .map(|r| {
                    let mut b = Budget::new(30);
                    b.set_view(view(0, n, n, r));
                    b
                })
                .collect();
            let mut open = vec![0u32; n as usize];
            // Far more clients than the budget, all before any report.
            for i in 0..200 {
                let k = (i * 7 + i / 3) % n as usize;
                if nodes[k].admits(open[k]) {
                    nodes[k].handle_open(open[k]);
                    open[k] += 1;
                }
            }
            assert_eq!(open.iter().sum::<u32>(), 30, "{n} nodes: {open:?}");
        }
    }

    #[test]
    fn an_idle_node_claims_what_it_holds_and_a_busy_one_follows_demand() {
        let mut b = Budget::new(100);
        b.set_view(view(20, 3, 3, 1));
        // Idle: claims its count only.
        assert_eq!(b.handle_report(5, true).connections, 5);
        // Still admits: one raise is allowed per report.
        assert!(b.admits(5));
        b.handle_open(5);
        // Raised to 6 + (100 - 20 - 5) / 3 = 5 + 25.
        assert_eq!(b.share(), 30);
        for a in 6..30 {
            assert!(b.admits(a));
            b.handle_open(a);
        }
        assert!(!b.admits(30), "one raise per round");
        // A report never raises the claim, nor does a view in which a
        // peer has not seen the raise yet.
        assert_eq!(b.handle_report(30, true).connections, 30);
        assert!(!b.admits(30));
        b.set_view(BudgetView {
            clock_max: 1,
            ..view(20, 3, 3, 1)
        });
        assert!(!b.admits(30), "one peer has not seen the raise");
        assert!(b.waits_for_round(30), "the client may wait for the round");
        // Once every peer has seen it, one raise again:
        // 30 + (100 - 20 - 30) / 3, by rank 1.
        b.set_view(view_at(20, 3, 3, 1, 1));
        assert!(b.admits(30));
        b.handle_open(30);
        assert_eq!(b.share(), 47);
        // Connections closed, few arrivals: the claim shrinks to the
        // count plus the demand since the report.
        assert_eq!(b.handle_report(10, true).connections, 11);
    }

    #[test]
    fn a_cut_off_node_keeps_its_fair_part_and_a_majority_takes_the_rest() {
        let mut b = Budget::new(30);
        // A fleet of 3; the other two vanished: the fair part, 10.
        b.set_view(view(0, 1, 3, 0));
        assert!(b.view().is_cut_off());
        assert!(b.admits(9));
        assert!(!b.admits(10));
        assert!(!b.waits_for_round(10), "no round comes while cut off");
        assert_eq!(b.handle_report(4, true).connections, 4);
        // 2 of 3 is a majority: it may take what the third held.
        b.set_view(view(10, 2, 3, 0));
        assert!(!b.view().is_cut_off());
        b.handle_report(10, true);
        assert!(b.admits(10));
        b.handle_open(10);
        assert_eq!(b.share(), 15); // 10 + (30 - 10 - 10) / 2
        // Two halves of 4 are both cut off.
        assert!(view(0, 2, 4, 1).is_cut_off());
        // A node that was always alone has the whole budget.
        let mut alone = Budget::new(30);
        for a in 0..30 {
            assert!(alone.admits(a));
            alone.handle_open(a);
        }
        assert!(!alone.admits(30));
    }
}
