// Why GEMM `auto`'s first rule sent DeiT's attention products to OpenBLAS (issue 31, part 2; Benchmarks/README.md,
// "Choice rule 2"): each per-(image, head) product of the fused attention (DeiT-Tiny: 197 tokens, 3 heads of 64,
// qkv rows of 576) timed three ways, OpenBLAS's time ÷ oneDNN's (> 1: oneDNN faster), both single-threaded:
//   chooser-style  the first rule's loop: the same hot scratch operands, calls from one cold call, fastest of 5
//                  alternating rounds; 8 repetitions (how often a 10% margin would pick oneDNN);
//   rotating       the operands rotating through copies of >= 8 MiB (the second rule), 4 repetitions;
//   model-style    a loop over 32 images × 3 heads of one qkv buffer, as the model runs it (noisy on a shared VM).
//     gcc -O2 Benchmarks/gemm_choice_attention.c -o /tmp/attn -lopenblas -ldnnl -lgomp && /tmp/attn
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef struct { const char *name; int ta, tb, m, n, k, lda, ldb, ldc; float beta; } S;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void run(int lib, S s, const float*a,const float*b,float*c){
  if(lib==0) cblas_sgemm(CblasRowMajor,s.ta?CblasTrans:CblasNoTrans,s.tb?CblasTrans:CblasNoTrans,s.m,s.n,s.k,0.125f,a,s.lda,b,s.ldb,s.beta,c,s.ldc);
  else dnnl_sgemm(s.ta?'T':'N',s.tb?'T':'N',s.m,s.n,s.k,0.125f,a,s.lda,b,s.ldb,s.beta,c,s.ldc);
}
static float* scratch(size_t n){float*p=aligned_alloc(64,((n*4+63)/64)*64);for(size_t i=0;i<n;i++)p[i]=(i%7)*0.25f-0.75f;return p;}
int main(int argc,char**argv){
  openblas_set_num_threads(1); omp_set_num_threads(1);
  S shapes[]={{"qk NT",0,1,197,197,64,576,576,197,0},{"pv NN",0,0,197,64,197,197,576,192,0},{"dP NT",0,1,197,197,64,192,576,197,0},
   {"dV TN",1,0,197,64,197,197,192,576,1},{"dQ NN",0,0,197,64,197,197,576,576,1},{"dK TN",1,0,197,64,197,197,576,576,1}};
  int images=32; float *qkv=scratch((size_t)images*197*576), *out=scratch((size_t)images*197*576), *sc=scratch(197*197);
  for(int si=0;si<6;si++){S s=shapes[si];
    // chooser style: hot scratch, calls from a first cold call, min over 5 rounds; 8 repetitions
    int onednnWins=0; double ratios[8];
    for(int rep=0;rep<8;rep++){
      float*a=scratch((size_t)(s.ta?s.k:s.m)*s.lda),*b=scratch((size_t)(s.tb?s.n:s.k)*s.ldb),*c=scratch((size_t)s.m*s.ldc);
      double t0=now(); run(0,s,a,b,c); double one=now()-t0; int calls=(int)(50e-6/(one>1e-9?one:1e-9)); if(calls<1)calls=1; if(calls>1000)calls=1000;
      double best[2]={1e9,1e9};
      for(int r=0;r<6;r++) for(int j=0;j<2;j++){int lib=(r%2==0)?j:1-j; double t=now(); for(int q=0;q<calls;q++) run(lib,s,a,b,c); t=(now()-t)/calls; if(r>0&&t<best[lib])best[lib]=t;}
      ratios[rep]=best[0]/best[1]; if(best[1]<=0.9*best[0]) onednnWins++; free(a);free(b);free(c);}
    // rotating copies: operands spread over >= 8 MB, each timed pass runs every copy once
    double rratios[4];
    for(int rep=0;rep<4;rep++){
      size_t na=(size_t)(s.ta?s.k:s.m)*s.lda, nb=(size_t)(s.tb?s.n:s.k)*s.ldb, nc=(size_t)s.m*s.ldc; int copies=(int)((8u<<20)/(4*(na+nb+nc)))+1; if(copies>256)copies=256;
      float*a=scratch(na*copies),*b=scratch(nb*copies),*c=scratch(nc*copies);
      double best[2]={1e9,1e9};
      for(int r=0;r<6;r++) for(int j=0;j<2;j++){int lib=(r%2==0)?j:1-j; double t=now(); for(int q=0;q<copies;q++) run(lib,s,a+q*na,b+q*nb,c+q*nc); t=(now()-t)/copies; if(r>0&&t<best[lib])best[lib]=t;}
      rratios[rep]=best[0]/best[1]; free(a);free(b);free(c);}
    printf("%s rotating:",s.name); for(int i=0;i<4;i++)printf(" %.2f",rratios[i]); printf("\n");
    // model style: loop over images x 3 heads, operands from a qkv buffer, scores per thread
    double mbest[2]={1e9,1e9};
    for(int r=0;r<6;r++) for(int j=0;j<2;j++){int lib=(r%2==0)?j:1-j; double t=now();
      for(int im=0;im<images;im++) for(int h=0;h<3;h++){float*rows=qkv+(size_t)im*197*576+h*64; float*o=out+(size_t)im*197*576+h*64;
        const float*a,*b; float*c;
        switch(si){case 0:a=rows;b=rows+192;c=sc;break;case 1:a=sc;b=rows+384;c=o;break;case 2:a=o;b=rows+384;c=sc;break;
          case 3:a=sc;b=o;c=rows+384;break;case 4:a=sc;b=rows+192;c=rows;break;default:a=sc;b=rows;c=rows+192;}
        run(lib,s,a,b,c);}
      t=(now()-t)/(images*3); if(r>0&&t<mbest[lib])mbest[lib]=t;}
    printf("%s  chooser-style OpenBLAS/oneDNN time ratio:",s.name); for(int i=0;i<8;i++)printf(" %.2f",ratios[i]);
    printf("  (oneDNN chosen %d/8)  model-style: %.2f  (%.1f vs %.1f us)\n",onednnWins,mbest[0]/mbest[1],mbest[0]*1e6,mbest[1]*1e6);
  }
}
