import Testing
@testable import ViTForgeDevice
