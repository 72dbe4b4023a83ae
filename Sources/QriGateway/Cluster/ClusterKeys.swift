import QriHTTP
import QriRedis

/// Where a pair lives in Redis and how Qri's data is laid out there. Pure: names, the
/// shard choice, the scripts, and the parsing of what they return.
///
/// A pair's name is `<peer length>:<peer><checksum>`, unambiguous for any bytes. Per pair:
/// `qri:h:<name>` (history list, entries `<hex id> <message>`), `qri:m:<name>` (hash: newest
/// id, newest id that left the history), channel `qri:c:<name>`. Per server: `qri:last`
/// (the last id it issued, decimal) and `qri:first` (its first). On the first server:
/// `qri:backdoor` (hash type → message) and the channel `qri:control`.
enum ClusterKeys {
    static func name(of pair: PairKey) -> [UInt8] {
        name(peer: pair.peer[...], checksum: pair.checksum[...])
    }

    static func name(peer: ArraySlice<UInt8>, checksum: ArraySlice<UInt8>) -> [UInt8] {
        var name: [UInt8] = []
        name.reserveCapacity(8 + peer.count + checksum.count)
        name += String(peer.count).utf8
        name.append(UInt8(ascii: ":"))
        name += peer
        name += checksum
        return name
    }

    static func history(_ name: [UInt8]) -> [UInt8] { Array("qri:h:".utf8) + name }
    static func meta(_ name: [UInt8]) -> [UInt8] { Array("qri:m:".utf8) + name }
    static func channel(_ name: [UInt8]) -> [UInt8] { Array("qri:c:".utf8) + name }
    static let last = Array("qri:last".utf8)
    static let first = Array("qri:first".utf8)
    static let backdoor = Array("qri:backdoor".utf8)
    static let control = Array("qri:control".utf8)

    /// The pair a channel name stands for; nil for another channel.
    static func pair(ofChannel channel: [UInt8]) -> PairKey? {
        let prefix = Array("qri:c:".utf8)
        guard channel.count > prefix.count, channel.starts(with: prefix) else { return nil }
        let name = channel[prefix.count...]
        guard let colon = name.firstIndex(of: UInt8(ascii: ":")),
              let length = Int(String(decoding: name[name.startIndex..<colon], as: UTF8.self)),
              length >= 0, name.distance(from: colon, to: name.endIndex) - 1 >= length else { return nil }
        let peerStart = name.index(after: colon)
        let peerEnd = name.index(peerStart, offsetBy: length)
        return PairKey(peer: Array(name[peerStart..<peerEnd]), checksum: Array(name[peerEnd...]))
    }

    // MARK: Shards

    /// A stable 64-bit hash of bytes (FNV-1a): the same on every node, unlike `Hasher`.
    static func stableHash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    /// Jump consistent hash (Lamping and Veach, 2014): the bucket of `key` among `buckets`.
    static func jumpHash(_ key: UInt64, buckets: Int) -> Int {
        var key = key
        var b: Int64 = -1, j: Int64 = 0
        while j < Int64(buckets) {
            b = j
            key = key &* 2_862_933_555_777_941_757 &+ 1
            j = Int64(Double(b + 1) * (Double(1 << 31) / Double((key >> 33) + 1)))
        }
        return Int(b)
    }

    static func shard(of pair: PairKey, shards: Int) -> Int {
        shard(ofName: name(of: pair), shards: shards)
    }

    static func shard(ofName name: [UInt8], shards: Int) -> Int {
        shards <= 1 ? 0 : jumpHash(stableHash(name), buckets: shards)
    }

    /// What every node of one cluster must agree on: the server list, in order.
    static func fingerprint(_ servers: [String]) -> String {
        let hash = stableHash(Array(servers.joined(separator: ",").utf8))
        var hex: [UInt8] = []
        SSEEncoder.appendHex(hash, to: &hex)
        return String(decoding: hex, as: UTF8.self)
    }

    // MARK: Entries

    /// Splits a history entry or channel payload, `<hex id> <message>`.
    static func entry(_ bytes: [UInt8]) -> (id: UInt64, message: ArraySlice<UInt8>)? {
        guard let space = bytes.firstIndex(of: UInt8(ascii: " ")),
              let id = SSEEncoder.parseID(bytes[..<space]) else { return nil }
        return (id, bytes[(space + 1)...])
    }

    static func hexID(_ bytes: [UInt8]?) -> UInt64 {
        bytes.flatMap { SSEEncoder.parseID($0) } ?? 0
    }

    // MARK: Scripts

    /// Issues the id (server clock in µs, above the last id issued), appends the message to
    /// the pair's bounded history, records the newest id that left it, sets the expiries and
    /// publishes to the nodes holding a stream of the pair. Returns {hex id, receivers}.
    /// KEYS: history, meta, channel, last, first. ARGV: message, history length, TTL ms,
    /// meta TTL ms.
    static let publishScript = """
        local t = redis.call('TIME')
        local id = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local last = tonumber(redis.call('GET', KEYS[4]) or '0')
        if id <= last then id = last + 1 end
        redis.call('SET', KEYS[4], string.format('%d', id))
        if last == 0 then redis.call('SETNX', KEYS[5], string.format('%d', id)) end
        local hid = string.format('%x', id)
        local entry = hid .. ' ' .. ARGV[1]
        local maxlen = tonumber(ARGV[2])
        local evicted = nil
        if maxlen > 0 then
          local len = redis.call('RPUSH', KEYS[1], entry)
          redis.call('PEXPIRE', KEYS[1], ARGV[3])
          if len > maxlen then
            local gone = redis.call('LPOP', KEYS[1], len - maxlen)
            evicted = string.match(gone[#gone], '^(%x+)')
          end
        end
        if evicted then
          redis.call('HSET', KEYS[2], 'newest', hid, 'evicted', evicted)
        else
          redis.call('HSET', KEYS[2], 'newest', hid)
        end
        redis.call('PEXPIRE', KEYS[2], ARGV[4])
        local n = redis.call('PUBLISH', KEYS[3], entry)
        return {hid, n}
        """

    /// What a stream of the pair starts or resumes from: {history entries, newest id (hex or
    /// false), newest id evicted (hex or false), the server's last id (decimal or false),
    /// its first id (decimal or false)}; keeps the history alive while streams read it.
    /// KEYS: history, meta, last, first. ARGV: TTL ms, meta TTL ms.
    static let openScript = """
        local entries = redis.call('LRANGE', KEYS[1], 0, -1)
        if #entries > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
        local newest = redis.call('HGET', KEYS[2], 'newest')
        local evicted = redis.call('HGET', KEYS[2], 'evicted')
        if newest then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
        local last = redis.call('GET', KEYS[3])
        if not last then
          -- A server that has issued no id yet starts from its clock, so that a first Tick's
          -- id is never below the microseconds since the epoch either.
          local t = redis.call('TIME')
          last = string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]))
          redis.call('SET', KEYS[3], last)
          redis.call('SETNX', KEYS[4], last)
        end
        return {entries, newest, evicted, last, redis.call('GET', KEYS[4])}
        """

    /// Keeps the histories of pairs with streams from expiring. KEYS: history, meta pairs.
    /// ARGV: TTL ms, meta TTL ms.
    static let touchScript = """
        for i = 1, #KEYS, 2 do
          redis.call('PEXPIRE', KEYS[i], ARGV[1])
          redis.call('PEXPIRE', KEYS[i + 1], ARGV[2])
        end
        return #KEYS / 2
        """
}

/// Where a stream of a pair starts: what the pair's history in Redis says.
struct ClusterPosition: Sendable {
    /// The pair's newest id, or the server's last id when the pair has none.
    var position: UInt64
    /// History entries, oldest first.
    var entries: [(id: UInt64, message: ArraySlice<UInt8>)]
    /// The newest id that left the history (evicted, or all of it expired).
    var leftUpTo: UInt64
    /// The server's first id: older ids may belong to data Redis lost.
    var firstID: UInt64

    /// Reads the open script's reply; nil when it is not one.
    init?(_ reply: RESPValue) {
        guard let items = reply.array, items.count == 5 else { return nil }
        let entries = (items[0].array ?? []).compactMap { $0.bytes.flatMap(ClusterKeys.entry) }
        let newest = ClusterKeys.hexID(items[1].bytes)
        let evicted = ClusterKeys.hexID(items[2].bytes)
        let last = items[3].bytes.flatMap { UInt64(String(decoding: $0, as: UTF8.self)) } ?? 0
        let first = items[4].bytes.flatMap { UInt64(String(decoding: $0, as: UTF8.self)) } ?? 0
        self.init(entries: entries, newest: newest, evicted: evicted, last: last, first: first)
    }

    init(entries: [(id: UInt64, message: ArraySlice<UInt8>)], newest: UInt64, evicted: UInt64, last: UInt64, first: UInt64) {
        self.entries = entries
        position = newest > 0 ? newest : last
        // A pair whose history list expired lost everything up to its newest id.
        leftUpTo = entries.isEmpty ? max(evicted, newest) : evicted
        firstID = first
    }

    /// Whether a client resuming after `lastEventID` missed events no longer kept: some left
    /// the history, or the id is older than anything this Redis data set issued (it lost its
    /// data, or never had it).
    func gap(after lastEventID: UInt64) -> Bool {
        lastEventID < leftUpTo || (lastEventID > 0 && (firstID == 0 || lastEventID < firstID))
    }
}
