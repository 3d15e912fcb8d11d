import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Why a file could not be written, said plainly: "is a directory", "no such directory /x",
/// "permission denied", rather than a Foundation error domain and code.
func writeFailure(_ path: String, _ error: any Error) -> String {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        return "cannot write \(path): is a directory"
    }
    let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
    if !FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) {
        return "cannot write \(path): no such directory \(folder)"
    }
    if !isDirectory.boolValue { return "cannot write \(path): \(folder) is not a directory" }
    // The POSIX error under Foundation's, when there is one.
    let nsError = error as NSError
    let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError
    if let posix = [underlying, nsError].compactMap({ $0 }).first(where: { $0.domain == NSPOSIXErrorDomain }) {
        return "cannot write \(path): \(String(cString: strerror(Int32(posix.code))).lowercased())"
    }
    if access(folder, W_OK) != 0 { return "cannot write \(path): permission denied in \(folder)" }
    return "cannot write \(path): \(nsError.localizedFailureReason ?? nsError.localizedDescription)"
}
