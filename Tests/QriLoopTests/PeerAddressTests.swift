import QriLoop
import Testing

@Suite struct PeerAddressTests {
    @Test func ipv4CountsPerAddress() throws {
        let a = try #require(PeerAddress(bytes: [127, 0, 0, 1]))
        #expect(a.family == 4 && a.bits == 0x7f00_0001)
        #expect(PeerAddress(bytes: [127, 0, 0, 2]) != a)
    }

    @Test func ipv6CountsPerSlash64() throws {
        let one: [UInt8] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2] + [0, 0, 0, 0, 0, 0, 0, 1]
        let sameNet: [UInt8] = Array(one[0..<8]) + [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]
        let nextNet: [UInt8] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 3] + [0, 0, 0, 0, 0, 0, 0, 1]
        let a = try #require(PeerAddress(bytes: one))
        #expect(a.family == 6 && a.bits == 0x2001_0db8_0001_0002)
        #expect(PeerAddress(bytes: sameNet) == a)
        #expect(PeerAddress(bytes: nextNet) != a)
    }

    @Test func ipv4MappedIPv6CountsAsIPv4() {
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]
        #expect(PeerAddress(bytes: mapped) == PeerAddress(bytes: [127, 0, 0, 1]))
        // ::1 is not mapped, and 0.0.0.1 is not the same client as ::1.
        let loopback: [UInt8] = Array(repeating: 0, count: 15) + [1]
        #expect(PeerAddress(bytes: loopback)?.family == 6)
        #expect(PeerAddress(bytes: loopback) != PeerAddress(bytes: [0, 0, 0, 1]))
    }

    @Test func otherLengthsHaveNoAddress() {
        #expect(PeerAddress(bytes: []) == nil)
        #expect(PeerAddress(bytes: [1, 2, 3]) == nil)
    }
}
