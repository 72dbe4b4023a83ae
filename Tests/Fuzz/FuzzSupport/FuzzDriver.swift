// What every libFuzzer target of Qri shares: libFuzzer's driver entry point, and the one
// C symbol it calls per input. SwiftPM gives each executable its own `main` (renamed
// `<Target>_main`), so a target hands its `main` to `runFuzzer`, which runs libFuzzer's
// driver with the target's test function.
#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// The test function of the running target; set once, before libFuzzer starts.
nonisolated(unsafe) private var testOneInput: ((UnsafeRawBufferPointer) -> Void)?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    testOneInput?(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// Runs libFuzzer with `test` as the function it calls for each input.
public func runFuzzer(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                      _ test: @escaping (UnsafeRawBufferPointer) -> Void) -> Int32 {
    testOneInput = test
    var argc = argc
    var argv = argv
    return runFuzzerDriver(&argc, &argv, fuzzerTestOneInput)
}
#else
/// What a fuzz target prints when built without `make fuzz`.
public func explainFuzzTarget() {
    print("a libFuzzer target: build and run it with `make fuzz`")
}
#endif
