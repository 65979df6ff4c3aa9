"""HTTP API: auth, validation, OpenAPI.  No business logic: it calls service/."""
