import QriHTTP

/// One SSE event, encoded once and written as is to every stream that gets it.
///
/// One buffer, id line first: a stream that gets one event per write hands this very buffer
/// to TLS, with no copy. The data part, which may be large, is encoded by the caller before
/// the registry's lock is taken; only the id line and one copy are made under it.
public struct EncodedEvent: Sendable {
    public let id: UInt64
    /// `id: <hex>\n[event: …\n]data: …\n\n`
    public let wire: [UInt8]
    /// Where the id line ends in `wire`.
    private let headLength: Int

    /// The event with id `id` and the encoded data part `body` (see `SSEEncoder.appendBody`).
    public init(id: UInt64, body: some Collection<UInt8>) {
        var wire: [UInt8] = []
        wire.reserveCapacity(20 + body.count)
        SSEEncoder.appendIDLine(id, to: &wire)
        headLength = wire.count
        wire.append(contentsOf: body)
        self.id = id
        self.wire = wire
    }

    /// `id: <hex>\n`
    public var head: ArraySlice<UInt8> { wire[..<headLength] }
    /// `[event: …\n]data: …\n\n`
    public var body: ArraySlice<UInt8> { wire[headLength...] }
    /// Bytes on the wire, which is also what history memory counts.
    public var size: Int { wire.count }
}
