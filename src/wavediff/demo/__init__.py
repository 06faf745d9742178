"""`wavediff demo`: WaveDiff learning handwritten digits on a laptop CPU."""
