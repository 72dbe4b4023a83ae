import QriRedis
import Testing

@Suite struct RedisEndpointTests {
    @Test func urls() throws {
        let plain = try #require(RedisEndpoint(url: "redis://127.0.0.1:6380"))
        #expect(!plain.tls && plain.host == "127.0.0.1" && plain.port == 6380 && plain.database == 0)
        #expect(plain.password == nil && plain.user == nil)
        let full = try #require(RedisEndpoint(url: "rediss://qri:p%40ss%20word@redis.example:7000/3"))
        #expect(full.tls && full.host == "redis.example" && full.port == 7000 && full.database == 3)
        #expect(full.user == "qri" && full.password == "p@ss word")
        #expect(!full.description.contains("p@ss"), "the password never shows in logs")
        let v6 = try #require(RedisEndpoint(url: "redis://[::1]:6379"))
        #expect(v6.host == "::1" && v6.description == "redis://[::1]:6379")
        let defaults = try #require(RedisEndpoint(url: "redis://localhost"))
        #expect(defaults.port == 6379)
        let passwordOnly = try #require(RedisEndpoint(url: "redis://:secret@h:1"))
        #expect(passwordOnly.user == nil && passwordOnly.password == "secret")
    }

    @Test func badURLs() {
        for url in ["http://h:1", "redis://", "redis://h:0", "redis://h:99999", "redis://h:1/x", "redis://[::1", "redis://h h:1"] {
            #expect(RedisEndpoint(url: url) == nil, "\(url)")
        }
    }
}

@Suite struct RESPCommandTests {
    @Test func binarySafeArguments() {
        let bytes = RESPCommand.format([Array("SET".utf8), [0x6B, 0x00, 0x62], Array("a\r\nb".utf8), []])
        #expect(bytes == Array("*4\r\n$3\r\nSET\r\n$3\r\nk\0b\r\n$4\r\na\r\nb\r\n$0\r\n\r\n".utf8))
    }
}
