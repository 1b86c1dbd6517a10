// The tests' seeded generator lives in its own target, below the op table (which the XCTest-free `op-table`
// executable links without the model layers); every test that imports this support module keeps seeing it.
@_exported import ViTForgeSeededGenerator
