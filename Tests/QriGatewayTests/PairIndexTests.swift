import QriTestSupport
@testable import QriGateway
import Testing

/// A `PairIndex` over a table of hashes, as the registry uses it over its slots. Hashes are
/// chosen by the test, so that collisions and runs that wrap around the table are forced.
private struct Model {
    var index = PairIndex()
    var hashes: [Int?] = []

    mutating func insert(_ slot: Int, hash: Int) {
        if slot >= hashes.count { hashes += Array(repeating: nil, count: slot + 1 - hashes.count) }
        hashes[slot] = hash
        let hashes = self.hashes
        index.insert(slot: slot, hash: hash) { hashes[$0]! }
    }

    mutating func remove(_ slot: Int) {
        let hashes = self.hashes
        index.remove(slot: slot, hash: hashes[slot]!) { hashes[$0]! }
        self.hashes[slot] = nil
    }

    func find(_ slot: Int, hash: Int) -> Int? {
        index.find(hash: hash) { $0 == slot }
    }
}

@Suite struct PairIndexTests {
    @Test func findsEveryEntryOfOneCollidingRunAfterRemovals() {
        var model = Model()
        // All in one bucket: one run of 10; remove from its middle and its start.
        for slot in 0..<10 { model.insert(slot, hash: 5) }
        model.remove(3)
        model.remove(0)
        for slot in 0..<10 {
            #expect(model.find(slot, hash: 5) == ([0, 3].contains(slot) ? nil : slot))
        }
        #expect(model.index.count == 8)
    }

    @Test func runsThatWrapAroundTheTableStayFindable() {
        var model = Model()
        // Hashes at the table's end (16 buckets at first) push entries to its start.
        for slot in 0..<6 { model.insert(slot, hash: 14 + slot % 2) }
        model.insert(6, hash: 0)
        model.remove(1)
        model.remove(2)
        for slot in [0, 3, 4, 5] { #expect(model.find(slot, hash: 14 + slot % 2) == slot) }
        #expect(model.find(6, hash: 0) == 6)
    }

    @Test(arguments: [1, 2, 3])
    func agreesWithADictionaryOverRandomInsertsAndRemovals(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var model = Model()
        var live: [Int: Int] = [:]  // slot → hash
        var nextSlot = 0
        for _ in 0..<20_000 {
            // Few distinct hashes: long runs and many collisions.
            if live.isEmpty || rng.next() % 3 != 0 {
                let hash = Int(truncatingIfNeeded: rng.next() % 64) &* 0x9E37_79B9
                model.insert(nextSlot, hash: hash)
                live[nextSlot] = hash
                nextSlot += 1
            } else {
                let slot = live.keys.randomElement(using: &rng)!
                model.remove(slot)
                live[slot] = nil
            }
        }
        #expect(model.index.count == live.count)
        for (slot, hash) in live { #expect(model.find(slot, hash: hash) == slot) }
        for slot in 0..<nextSlot where live[slot] == nil {
            #expect(model.find(slot, hash: model.hashes[slot] ?? 0) == nil)
        }
    }

    @Test func aKeyHashesByItsBytesAndTheirSplit() {
        let a = PairKey(peer: "ab", checksum: "c")
        #expect(PairIndex.hash(a) == PairIndex.hash(PairKey(peer: "ab", checksum: "c")))
        #expect(PairIndex.hash(a) != PairIndex.hash(PairKey(peer: "a", checksum: "bc")))
    }
}
