// The basics (fixtures, temporary folders, the seeded generator) come with the test support, so that a test target
// above the device layer needs one import.
@_exported import ViTForgeTestBasics
