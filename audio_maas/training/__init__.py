"""Training, evaluation and export of the spoken-digit CNN and LSTM."""
