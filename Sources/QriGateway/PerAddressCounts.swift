import QriLoop
import Synchronization

/// Open public connections per client address (MAX_CONNECTIONS_PER_IP), shared by every
/// loop. Thread-safe; memory follows the addresses that hold connections now: an entry is
/// removed when its count returns to zero.
///
/// The counts are split over a few locks by address, so that loops accepting at once seldom
/// wait for each other.
final class PerAddressCounts: Sendable {
    /// Connections one address may hold; 0: no cap (nothing is counted).
    let limit: Int
    private let shards: [Shard]

    private final class Shard: Sendable {
        let counts = Mutex<[PeerAddress: Int]>([:])
    }

    init(limit: Int, shards: Int = 16) {
        self.limit = limit
        self.shards = (0..<max(shards, 1)).map { _ in Shard() }
    }

    private func shard(_ address: PeerAddress) -> Shard {
        shards[Int(UInt(bitPattern: address.hashValue) % UInt(shards.count))]
    }

    /// Counts a new connection from `address` in, or says no when it already holds `limit`.
    /// Always yes without a cap or without an address.
    func admit(_ address: PeerAddress?) -> Bool {
        guard limit > 0, let address else { return true }
        return shard(address).counts.withLock { counts in
            let open = counts[address, default: 0]
            guard open < limit else { return false }
            counts[address] = open + 1
            return true
        }
    }

    /// Counts a connection admitted by `admit` out.
    func release(_ address: PeerAddress?) {
        guard limit > 0, let address else { return }
        shard(address).counts.withLock { counts in
            guard let open = counts[address] else { return }
            if open <= 1 { counts[address] = nil } else { counts[address] = open - 1 }
        }
    }

    /// Addresses with at least one connection counted (for tests).
    var addressCount: Int { shards.reduce(0) { sum, shard in sum + shard.counts.withLock { $0.count } } }
}
