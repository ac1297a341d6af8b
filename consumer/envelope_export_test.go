package consumer

// DecodeEnvelope is how a delivery's body is decoded, for the fuzz test.
var DecodeEnvelope = decode
