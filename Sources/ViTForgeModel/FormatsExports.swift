// The file formats (config, safetensors, HF import, atomic writes) come with the model layer, so that the layers
// above keep one import for a model and its files.
@_exported import ViTForgeFormats
