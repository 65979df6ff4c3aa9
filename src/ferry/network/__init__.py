"""Guest networks: can a destination plug in every interface a guest has."""
