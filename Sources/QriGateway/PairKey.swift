/// A (peer, checksum) pair: the address of a message and of the streams that receive it.
public struct PairKey: Hashable, Sendable {
    public let peer: [UInt8]
    public let checksum: [UInt8]

    public init(peer: [UInt8], checksum: [UInt8]) {
        self.peer = peer
        self.checksum = checksum
    }

    public init(peer: String, checksum: String) {
        self.init(peer: Array(peer.utf8), checksum: Array(checksum.utf8))
    }
}
