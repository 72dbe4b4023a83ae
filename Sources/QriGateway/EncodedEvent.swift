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
        wire.reserveCapacity(Self.reserve(bodyCount: body.count))
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
    /// Bytes on the wire.
    public var size: Int { wire.count }

    /// The heap the event's buffer takes, as reserved (the id line fits: at most 20 bytes
    /// for ids below 2^60, some 36,000 years of microseconds): what a history is charged for it.
    var heapBytes: Int { HeapCost.array(of: UInt8.self, capacity: Self.reserve(bodyCount: wire.count - headLength)) }

    private static func reserve(bodyCount: Int) -> Int { 20 + bodyCount }
}

/// Heap costs, for the history memory bound (HISTORY_MEMORY).
enum HeapCost {
    /// What glibc's malloc takes for `bytes`: the request plus its 8-byte chunk header,
    /// rounded up to 16, at least 32.
    @inline(__always)
    static func allocation(_ bytes: Int) -> Int { Swift.max(32, (bytes + 8 + 15) & ~15) }

    /// A Swift array's buffer of `capacity` elements (a 32-byte header, then the elements),
    /// as requested with `reserveCapacity`; an empty array takes no heap.
    @inline(__always)
    static func array<T>(of _: T.Type, capacity: Int) -> Int {
        capacity == 0 ? 0 : allocation(32 + capacity * MemoryLayout<T>.stride)
    }
}
