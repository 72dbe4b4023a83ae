@testable import QriGateway
import QriLoop
import Testing

@Suite struct ConnectionLimitsTests {
    @Test func publicCapLeavesAdminAndIngestDescriptorsFree() {
        let limits = ConnectionLimits.sized(maxConnections: nil, maxAdmin: 256, maxIngest: 1024,
                                            descriptorLimit: 20_000, loops: 2)
        #expect(limits.admin == 256 && limits.ingest == 1024)
        #expect(limits.public == 20_000 - 256 - 1024 - ConnectionLimits.fixedReserve(loops: 2))
        #expect(limits.notes.isEmpty)
    }

    @Test func hundredThousandIsTheDefaultCeiling() {
        let limits = ConnectionLimits.sized(maxConnections: nil, maxAdmin: 256, maxIngest: 1024,
                                            descriptorLimit: 1 << 20, loops: 4)
        #expect(limits.public == 100_000)
    }

    @Test func anExplicitCapAboveTheDescriptorsStillStopsBeforeTheReserves() {
        let limits = ConnectionLimits.sized(maxConnections: 50_000, maxAdmin: 256, maxIngest: 1024,
                                            descriptorLimit: 20_000, loops: 2)
        #expect(limits.public + limits.admin + limits.ingest + ConnectionLimits.fixedReserve(loops: 2) <= 20_000)
        #expect(limits.notes.count == 1)
        let lower = ConnectionLimits.sized(maxConnections: 50, maxAdmin: 256, maxIngest: 1024,
                                           descriptorLimit: 20_000, loops: 2)
        #expect(lower.public == 50 && lower.notes.isEmpty)
    }

    @Test func reservesShrinkToAQuarterOfASmallLimitAndSaySo() {
        let limits = ConnectionLimits.sized(maxConnections: nil, maxAdmin: 256, maxIngest: 1024,
                                            descriptorLimit: 1024, loops: 2)
        #expect(limits.admin + limits.ingest <= 256)
        #expect(limits.admin >= 1 && limits.ingest >= 1)
        #expect(limits.public + limits.admin + limits.ingest + ConnectionLimits.fixedReserve(loops: 2) <= 1024)
        #expect(limits.notes.count == 1)
    }
}

@Suite struct PerAddressCountsTests {
    @Test func capsEachAddressAndForgetsAddressesAtZero() throws {
        let counts = PerAddressCounts(limit: 2)
        let a = try #require(PeerAddress(bytes: [10, 0, 0, 1]))
        let b = try #require(PeerAddress(bytes: [10, 0, 0, 2]))
        #expect(counts.admit(a) && counts.admit(a))
        #expect(!counts.admit(a))
        #expect(counts.admit(b))
        #expect(counts.addressCount == 2)
        counts.release(a)
        #expect(counts.admit(a))
        counts.release(a); counts.release(a); counts.release(b)
        #expect(counts.addressCount == 0)
        // A release with nothing counted does not go negative.
        counts.release(a)
        #expect(counts.admit(a) && counts.admit(a) && !counts.admit(a))
    }

    @Test func withoutACapNothingIsCounted() throws {
        let counts = PerAddressCounts(limit: 0)
        let a = try #require(PeerAddress(bytes: [10, 0, 0, 1]))
        for _ in 0..<100 { #expect(counts.admit(a)) }
        #expect(counts.addressCount == 0)
        #expect(counts.admit(nil))
    }
}
