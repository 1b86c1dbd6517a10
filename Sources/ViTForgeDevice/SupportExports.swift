// The support layer below the device (process locks, fault hooks, QKVLayout) comes with it, so that a layer above
// that uses a backend's attention layout or the fault hooks needs no second import.
@_exported import ViTForgeSupport
