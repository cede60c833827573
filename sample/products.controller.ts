import { Body, Controller, Get, Param, Post, Query, UseInterceptors } from '@nestjs/common';
import { CacheEvict, CacheInterceptor, CacheTags, CacheTTL, CacheVary, NoCache } from 'nest-cache';

const PRODUCTS = [
  { id: '1', name: 'Kettle', price: 39 },
  { id: '2', name: 'Teapot', price: 24 },
  { id: '3', name: 'Mug', price: 9 },
];

/**
 * Whole responses cached by CacheInterceptor: see the X-Cache (HIT, MISS, BYPASS) and Age headers
 * with `curl -i`. A request with an Authorization or Cookie header bypasses the cache.
 */
@Controller('products')
@UseInterceptors(CacheInterceptor)
export class ProductsController {
  /** How often a handler really ran, to see the cache at work. */
  private runs = 0;

  @Get()
  @CacheTTL('5m')
  @CacheTags('products')
  list(@Query('maxPrice') maxPrice?: string) {
    const limit = maxPrice === undefined ? Infinity : Number(maxPrice);
    return { products: PRODUCTS.filter((p) => p.price <= limit), runs: ++this.runs };
  }

  /** Adds a product; once it succeeded, every cached response tagged 'products' is gone. */
  @Post()
  @CacheEvict({ tags: ['products'] })
  add(@Body() body: { name?: string; price?: number }) {
    const product = {
      id: String(PRODUCTS.length + 1),
      name: String(body?.name ?? 'Unnamed'),
      price: Number(body?.price ?? 0),
    };
    PRODUCTS.push(product);
    return product;
  }

  @Get('greeting')
  @CacheVary('accept-language')
  greeting(@Query('name') name = 'friend') {
    return { text: `Hello, ${name}`, runs: ++this.runs };
  }

  @Get('stats')
  @NoCache()
  stats() {
    return { handlerRuns: this.runs, at: new Date() };
  }

  @Get(':id')
  one(@Param('id') id: string) {
    return { product: PRODUCTS.find((p) => p.id === id) ?? null, runs: ++this.runs };
  }
}
