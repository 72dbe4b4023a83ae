/// The address a connection came from, as accept(2) reported it: what per-address limits
/// count by. IPv4 counts per address, IPv6 per /64 (one home or one host gets a /64, and
/// walking its 2^64 addresses must not multiply the cap), and an IPv4-mapped IPv6 address
/// (a dual-stack listener's IPv4 client) as the IPv4 address it is.
public struct PeerAddress: Hashable, Sendable {
    /// 4 or 6, after unmapping.
    public let family: UInt8
    /// IPv4: the address in the low 32 bits; IPv6: the /64 prefix.
    public let bits: UInt64

    /// `bytes`: 4 bytes of an IPv4 address or 16 of an IPv6 one, network order.
    public init?(bytes: some Collection<UInt8>) {
        let b = Array(bytes)
        switch b.count {
        case 4:
            family = 4
            bits = b.reduce(0) { $0 << 8 | UInt64($1) }
        case 16:
            if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff {
                family = 4
                bits = b[12..<16].reduce(0) { $0 << 8 | UInt64($1) }
            } else {
                family = 6
                bits = b[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
            }
        default:
            return nil
        }
    }
}

/// A connection accept(2) returned: its non-blocking descriptor and where it came from (nil
/// for a family other than IPv4 and IPv6).
public struct AcceptedSocket: Sendable {
    public let fd: Int32
    public let peer: PeerAddress?
}
