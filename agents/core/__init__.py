"""The pure core: plain functions and records, no Faust, Kafka or SQLite (a test guards it).

The stream path and the daily rebuild both call `features.wallet_features` and `rules.classify`,
which is why they agree to the last bit.
"""
