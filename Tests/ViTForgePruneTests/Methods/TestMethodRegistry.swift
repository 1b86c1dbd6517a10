import ArgumentParser
import ViTForgePrune

/// The built-in registry with the test-only method added: a new method is its folder plus one line here (or in
/// `MethodOptionGroups`).
struct TestMethodRegistry: MethodRegistry {
    @OptionGroup var builtIn: MethodOptionGroups
    @OptionGroup var shrink: NoMethodFlags<ShrinkWhileTraining>
}
