"""Pure prediction: dirty-page curves, the pre-copy model, strategy choice.  No I/O."""
