@testable import QriGateway
import QriTestSupport
import Testing

@Suite struct ClusterKeysTests {
    @Test func channelNamesGiveTheirPairBackForAnyBytes() {
        var random = SplitMix64(seed: 7)
        for _ in 0..<500 {
            let peer = (0..<Int(random.next() % 12)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let checksum = (0..<Int(random.next() % 12)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let pair = PairKey(peer: peer, checksum: checksum)
            #expect(ClusterKeys.pair(ofChannel: ClusterKeys.channel(ClusterKeys.name(of: pair))) == pair)
        }
        // "1:ab" + "c" and "2:ab" + "" must not be the same pair.
        #expect(ClusterKeys.name(of: PairKey(peer: "a", checksum: "bc")) != ClusterKeys.name(of: PairKey(peer: "ab", checksum: "c")))
        #expect(ClusterKeys.pair(ofChannel: Array("qri:c:9:ab".utf8)) == nil)
        #expect(ClusterKeys.pair(ofChannel: Array("other".utf8)) == nil)
    }

    @Test func jumpHashSpreadsAndMovesLittleWhenAServerIsAdded() {
        var counts = [0, 0, 0]
        var moved = 0
        for i in 0..<30_000 {
            let key = ClusterKeys.stableHash(Array("pair-\(i)".utf8))
            let three = ClusterKeys.jumpHash(key, buckets: 3)
            counts[three] += 1
            let four = ClusterKeys.jumpHash(key, buckets: 4)
            if four != three {
                moved += 1
                #expect(four == 3, "a key moves only to the new server")
            }
        }
        #expect(counts.allSatisfy { $0 > 9_000 && $0 < 11_000 }, "\(counts)")
        #expect(moved > 6_500 && moved < 8_500, "about a quarter moves: \(moved)")
        #expect(ClusterKeys.shard(of: PairKey(peer: "a", checksum: "b"), shards: 1) == 0)
    }

    @Test func fingerprintDependsOnTheOrder() {
        #expect(ClusterKeys.fingerprint(["redis://a:1", "redis://b:1"]) != ClusterKeys.fingerprint(["redis://b:1", "redis://a:1"]))
        #expect(ClusterKeys.fingerprint(["redis://a:1"]) == ClusterKeys.fingerprint(["redis://a:1"]))
    }

    @Test func entries() {
        let entry = ClusterKeys.entry(Array("1a2b some message with spaces".utf8))
        #expect(entry?.id == 0x1a2b && entry.map { Array($0.message) } == Array("some message with spaces".utf8))
        #expect(ClusterKeys.entry(Array("nothex x".utf8)) == nil)
        #expect(ClusterKeys.entry(Array("12".utf8)) == nil)
    }

    @Test func gapRule() {
        let kept = ClusterPosition(entries: [(100, []), (101, [])], newest: 101, evicted: 99, last: 101, first: 50)
        #expect(!kept.gap(after: 99), "everything after 99 is still there")
        #expect(kept.gap(after: 98), "99 left the history")
        #expect(kept.gap(after: 40), "older than the data set")
        #expect(kept.position == 101)
        let expired = ClusterPosition(entries: [], newest: 101, evicted: 0, last: 120, first: 50)
        #expect(expired.gap(after: 100) && !expired.gap(after: 101), "an expired history lost all up to its newest")
        #expect(expired.position == 101)
        let lost = ClusterPosition(entries: [], newest: 0, evicted: 0, last: 0, first: 0)
        #expect(lost.gap(after: 5), "Redis has no data at all: any id is from before")
        #expect(!lost.gap(after: 0))
        let fresh = ClusterPosition(entries: [], newest: 0, evicted: 0, last: 500, first: 10)
        #expect(fresh.position == 500, "a pair with no message starts at its server's last id")
    }
}
