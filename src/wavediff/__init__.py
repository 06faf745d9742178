"""wavediff: Wavelet Diffusion Models (Phung, Dao & Tran, CVPR 2023) in clean PyTorch."""
__version__ = "0.1.0"
