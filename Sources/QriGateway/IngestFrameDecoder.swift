import SwiftASN1

/// One message as a backend sent it over the ingest port. The fields are slices of the
/// buffer the frame was read into: decoding copies nothing.
public struct IngestMessage: Sendable, Equatable {
    public let peer: ArraySlice<UInt8>
    public let checksum: ArraySlice<UInt8>
    public let message: ArraySlice<UInt8>

    public init(peer: ArraySlice<UInt8>, checksum: ArraySlice<UInt8>, message: ArraySlice<UInt8>) {
        self.peer = peer
        self.checksum = checksum
        self.message = message
    }

    /// The pair, as a key of its own.
    public var pair: PairKey { PairKey(peer: Array(peer), checksum: Array(checksum)) }
}

/// Why an ingest connection was closed.
public enum IngestFrameError: Error, Equatable, Sendable, CustomStringConvertible {
    case notASequence(UInt8)
    case indefiniteLength
    case tooLarge(Int)
    case malformed(String)

    public var description: String {
        switch self {
        case .notASequence(let tag): return "frame does not start with a SEQUENCE (tag 0x\(String(tag, radix: 16)))"
        case .indefiniteLength: return "frame uses an indefinite length"
        case .tooLarge(let n): return "frame of \(n) bytes is over the frame cap"
        case .malformed(let why): return "malformed frame: \(why)"
        }
    }
}

/// Splits the qri-py wire format — BER `SEQUENCE { peer, checksum, message OCTET STRING }`
/// values back to back, definite lengths — into messages. Framing is ours (so a frame's size
/// is known, and capped, before its bytes are held); the ASN.1 inside is swift-asn1's.
///
/// Pure and incremental: feed it reads as they come, split anywhere.
public struct IngestFrameDecoder: Sendable {
    public let maxFrameBytes: Int
    /// Bytes of an incomplete frame, kept between reads.
    private var partial: [UInt8] = []

    public init(maxFrameBytes: Int) { self.maxFrameBytes = maxFrameBytes }

    /// Bytes held for an incomplete frame.
    public var bufferedBytes: Int { partial.count }

    /// Decodes every complete frame in `partial` + `bytes`, calling `deliver` for each in
    /// order, and keeps the rest. After an error the decoder must not be fed again.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ deliver: (IngestMessage) -> Void) throws(IngestFrameError) {
        if partial.isEmpty {
            // One copy per read, not per frame: frames are parsed as slices of it.
            let chunk = Array(bytes)
            let used = try Self.decodeFrames(in: chunk, maxFrameBytes: maxFrameBytes, deliver)
            if used < chunk.count { partial = Array(chunk[used...]) }
            return
        }
        partial.append(contentsOf: bytes)
        let used = try Self.decodeFrames(in: partial, maxFrameBytes: maxFrameBytes, deliver)
        if used == partial.count {
            partial = []
        } else if used > 0 {
            partial.removeFirst(used)
        }
    }

    /// Decodes the complete frames at the start of `buffer`; returns how many bytes they took.
    static func decodeFrames(in buffer: [UInt8], maxFrameBytes: Int,
                             _ deliver: (IngestMessage) -> Void) throws(IngestFrameError) -> Int {
        var offset = 0
        while offset < buffer.count {
            let start = offset
            let length = buffer.withUnsafeBytes { raw in
                Result { () throws(IngestFrameError) in
                    try frameLength(UnsafeRawBufferPointer(rebasing: raw[start...]), maxFrameBytes: maxFrameBytes)
                }
            }
            guard let length = try length.get(), length <= buffer.count - offset else { break }
            deliver(try decodeFrame(buffer[offset..<(offset + length)]))
            offset += length
        }
        return offset
    }

    /// The whole length of the frame at the start of `bytes` (identifier, length and
    /// contents), or nil when its header is not complete yet.
    static func frameLength(_ bytes: UnsafeRawBufferPointer, maxFrameBytes: Int) throws(IngestFrameError) -> Int? {
        guard let tag = bytes.first else { return nil }
        guard tag == 0x30 else { throw .notASequence(tag) }
        guard bytes.count >= 2 else { return nil }
        let first = bytes[1]
        let total: Int
        if first < 0x80 {
            total = 2 + Int(first)
        } else if first == 0x80 {
            throw .indefiniteLength
        } else {
            let count = Int(first & 0x7F)
            // Four length bytes already say 4 GiB: anything longer is over any cap.
            guard count <= 4 else { throw .tooLarge(Int.max) }
            guard bytes.count >= 2 + count else { return nil }
            var length = 0
            for i in 0..<count { length = length << 8 | Int(bytes[2 + i]) }
            total = 2 + count + length
        }
        guard total <= maxFrameBytes else { throw .tooLarge(total) }
        return total
    }

    static func decodeFrame(_ frame: ArraySlice<UInt8>) throws(IngestFrameError) -> IngestMessage {
        do {
            let node = try BER.parse(frame)
            return try BER.sequence(node, identifier: .sequence) { nodes in
                let peer = try ASN1OctetString(berEncoded: &nodes)
                let checksum = try ASN1OctetString(berEncoded: &nodes)
                let message = try ASN1OctetString(berEncoded: &nodes)
                guard nodes.next() == nil else { throw IngestFrameError.malformed("more than three fields") }
                return IngestMessage(peer: peer.bytes, checksum: checksum.bytes, message: message.bytes)
            }
        } catch let error as IngestFrameError {
            throw error
        } catch {
            throw .malformed("\(error)")
        }
    }
}
