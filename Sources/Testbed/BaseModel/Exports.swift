// The base model is used through the engine's pipeline types (PromptEncoder, Generator) and as the product's
// subject; importing BaseModel brings them along.
@_exported import Pipeline
