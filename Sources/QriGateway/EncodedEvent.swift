/// One SSE event, encoded once and written as is to every stream that gets it.
///
/// Kept in two parts so the id line can be made under the registry's lock while the data
/// part, which may be large, is encoded outside it.
public struct EncodedEvent: Sendable {
    public let id: UInt64
    /// `id: <hex>\n`
    public let head: [UInt8]
    /// `[event: …\n]data: …\n\n`
    public let body: [UInt8]

    public init(id: UInt64, head: [UInt8], body: [UInt8]) {
        self.id = id
        self.head = head
        self.body = body
    }

    /// Bytes on the wire, which is also what history memory counts.
    public var size: Int { head.count + body.count }
}
