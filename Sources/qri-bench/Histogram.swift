/// A log-linear latency histogram in nanoseconds: exact below 128 ns, then 64 buckets per
/// power of two (about 1.6 % resolution), up to 2^63. Fixed memory, O(1) record.
struct Histogram {
    private static let linear = 128
    private static let perOctave = 64
    private var counts = [UInt64](repeating: 0, count: linear + perOctave * 57)
    private(set) var count: UInt64 = 0
    private(set) var max: UInt64 = 0
    private(set) var sum: UInt64 = 0

    mutating func record(_ value: UInt64) {
        counts[Self.index(value)] += 1
        count += 1
        sum &+= value
        if value > max { max = value }
    }

    mutating func add(_ other: Histogram) {
        for i in counts.indices { counts[i] += other.counts[i] }
        count += other.count
        sum &+= other.sum
        max = Swift.max(max, other.max)
    }

    static func index(_ value: UInt64) -> Int {
        if value < UInt64(linear) { return Int(value) }
        // value >> shift lies in [64, 128).
        let shift = 63 - value.leadingZeroBitCount - 6
        return linear + (shift - 1) * perOctave + Int(value >> UInt64(shift)) - perOctave
    }

    /// The largest value a bucket holds.
    static func upperBound(_ index: Int) -> UInt64 {
        if index < linear { return UInt64(index) }
        let shift = (index - linear) / perOctave + 1
        let mantissa = UInt64((index - linear) % perOctave + perOctave)
        return ((mantissa + 1) << UInt64(shift)) - 1
    }

    /// The value at quantile `q` (0…1), as the upper bound of its bucket, capped at the max.
    func value(at q: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let rank = Swift.max(1, UInt64((q * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for (i, c) in counts.enumerated() where c > 0 {
            seen += c
            if seen >= rank { return Swift.min(Self.upperBound(i), max) }
        }
        return max
    }

    var mean: Double { count == 0 ? 0 : Double(sum) / Double(count) }
}
