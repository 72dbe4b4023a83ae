/// Finds the registry's slot of a (peer, checksum) from the key's bytes, so that routing a
/// message looks its pair up straight from the ingest buffer without building a key.
///
/// Open addressing with linear probing over a power-of-two table of `Int32` buckets (slot
/// + 1, 0 when empty), kept at most 3/4 full; removal shifts later entries back, so there
/// are no tombstones. The index holds only slot numbers: the keys and their hashes stay in
/// the registry's slots, which the caller's closures read.
struct PairIndex {
    private var buckets: [Int32] = Array(repeating: 0, count: 16)
    private var mask = 15
    private(set) var count = 0

    /// The hash a key is filed under: seeded per process (Swift's `Hasher`), since stream
    /// URLs and ingest senders choose the keys.
    static func hash(peer: UnsafeRawBufferPointer, checksum: UnsafeRawBufferPointer) -> Int {
        var hasher = Hasher()
        hasher.combine(peer.count)
        hasher.combine(bytes: peer)
        hasher.combine(bytes: checksum)
        return hasher.finalize()
    }

    static func hash(_ key: PairKey) -> Int {
        key.peer.withUnsafeBytes { peer in key.checksum.withUnsafeBytes { hash(peer: peer, checksum: $0) } }
    }

    /// The slot filed under `hash` for which `isMatch` holds, if any.
    func find(hash: Int, _ isMatch: (Int) -> Bool) -> Int? {
        var i = hash & mask
        while true {
            let bucket = buckets[i]
            if bucket == 0 { return nil }
            if isMatch(Int(bucket) - 1) { return Int(bucket) - 1 }
            i = (i + 1) & mask
        }
    }

    /// Files `slot` under `hash`; `hashOf` gives the hash of any slot already filed.
    mutating func insert(slot: Int, hash: Int, hashOf: (Int) -> Int) {
        if (count + 1) * 4 > buckets.count * 3 { grow(hashOf) }
        var i = hash & mask
        while buckets[i] != 0 { i = (i + 1) & mask }
        buckets[i] = Int32(slot + 1)
        count += 1
    }

    /// Removes `slot`, filed under `hash`.
    mutating func remove(slot: Int, hash: Int, hashOf: (Int) -> Int) {
        let target = Int32(slot + 1)
        var hole = hash & mask
        while buckets[hole] != target {
            precondition(buckets[hole] != 0, "slot \(slot) is not in the index")
            hole = (hole + 1) & mask
        }
        // Shift back each later entry of the run that may not sit past the hole.
        var next = hole
        while true {
            next = (next + 1) & mask
            let bucket = buckets[next]
            if bucket == 0 { break }
            let home = hashOf(Int(bucket) - 1) & mask
            let staysPut = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
            if !staysPut {
                buckets[hole] = bucket
                hole = next
            }
        }
        buckets[hole] = 0
        count -= 1
    }

    private mutating func grow(_ hashOf: (Int) -> Int) {
        let old = buckets
        buckets = Array(repeating: 0, count: old.count * 2)
        mask = buckets.count - 1
        for bucket in old where bucket != 0 {
            var i = hashOf(Int(bucket) - 1) & mask
            while buckets[i] != 0 { i = (i + 1) & mask }
            buckets[i] = bucket
        }
    }
}
